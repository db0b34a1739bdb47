//! Views of API tokens: one token's description, a new token with its secret (shown this
//! once), the answer to a delete, and `token list`.

use berth_common::proto;
use serde::Serialize;

use super::{Answer, Render, Table, Time, enum_name, fields, time, yes_no};

fn role_name(value: i32) -> String {
    let name = proto::Role::try_from(value).ok().map(|role| match role {
        proto::Role::Unspecified => "unspecified",
        proto::Role::Admin => "admin",
        proto::Role::User => "user",
        proto::Role::Worker => "worker",
    });
    enum_name(value, name)
}

/// A token's description (never its secret).
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub id: String,
    pub role: String,
    pub owner: String,
    pub comment: String,
    pub enabled: bool,
    pub prefix: String,
    pub expires_at: Option<Time>,
    pub created_at: Option<Time>,
    pub last_used_at: Option<Time>,
}

impl From<proto::TokenInfo> for TokenView {
    fn from(info: proto::TokenInfo) -> TokenView {
        TokenView {
            id: info.id,
            role: role_name(info.role),
            owner: info.owner,
            comment: info.comment,
            enabled: info.enabled,
            prefix: info.prefix,
            expires_at: Time::from_proto(info.expires_at.as_ref()),
            created_at: Time::from_proto(info.created_at.as_ref()),
            last_used_at: Time::from_proto(info.last_used_at.as_ref()),
        }
    }
}

impl Answer for proto::TokenInfo {
    type View = TokenView;
}

impl Render for TokenView {
    fn table(&self) -> String {
        fields(&[
            ("id", self.id.clone()),
            ("role", self.role.clone()),
            ("owner", self.owner.clone()),
            ("comment", self.comment.clone()),
            ("enabled", yes_no(self.enabled)),
            ("prefix", self.prefix.clone()),
            ("expires_at", time(self.expires_at)),
            ("created_at", time(self.created_at)),
            ("last_used_at", time(self.last_used_at)),
        ])
    }
}

/// A new token with its secret: the one time the secret is shown.
#[derive(Debug, Serialize)]
pub struct CreatedTokenView {
    #[serde(flatten)]
    pub info: TokenView,
    pub token: String,
}

impl From<proto::CreateTokenResponse> for CreatedTokenView {
    fn from(response: proto::CreateTokenResponse) -> CreatedTokenView {
        CreatedTokenView {
            info: TokenView::from(response.info.unwrap_or_default()),
            token: response.token,
        }
    }
}

impl CreatedTokenView {
    /// What goes to stderr in table mode: what was created, and that this is the only
    /// chance to copy the secret.
    pub fn notice(&self) -> String {
        let owner = if self.info.owner.is_empty() {
            String::new()
        } else {
            format!(" for {}", self.info.owner)
        };
        let expiry = self.info.expires_at.map_or_else(
            || "never expires".to_owned(),
            |t| format!("expires {}", t.short()),
        );
        format!(
            "created {} token {}{owner} ({expiry})\n\
             warning: the token is shown only once; store it now\n",
            self.info.role, self.info.id
        )
    }
}

impl Render for CreatedTokenView {
    /// Only the secret, on its own line, so `berth token create ... > token` makes a
    /// file `--token-file` can read; the rest goes to stderr (see [`Self::notice`]).
    fn table(&self) -> String {
        format!("{}\n", self.token)
    }
}

/// The answer to `token delete`.
#[derive(Debug, Serialize)]
pub struct DeletedTokenView {
    pub id: String,
    pub deleted: bool,
}

impl Render for DeletedTokenView {
    fn table(&self) -> String {
        fields(&[("id", self.id.clone()), ("deleted", yes_no(self.deleted))])
    }
}

/// `token list`.
#[derive(Debug, Serialize)]
pub struct TokenListView {
    pub tokens: Vec<TokenView>,
}

impl From<proto::ListTokensResponse> for TokenListView {
    fn from(response: proto::ListTokensResponse) -> TokenListView {
        TokenListView {
            tokens: response.tokens.into_iter().map(TokenView::from).collect(),
        }
    }
}

impl Answer for proto::ListTokensResponse {
    type View = TokenListView;
}

impl Render for TokenListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "ID",
            "ROLE",
            "OWNER",
            "ENABLED",
            "EXPIRES",
            "LAST_USED",
            "CREATED",
            "COMMENT",
        ]);
        for token in &self.tokens {
            table.row([
                token.id.clone(),
                token.role.clone(),
                token.owner.clone(),
                yes_no(token.enabled),
                time(token.expires_at),
                time(token.last_used_at),
                time(token.created_at),
                token.comment.clone(),
            ]);
        }
        table.render()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::output::to_json;

    #[test]
    fn created_token_json_has_the_secret_and_the_info() {
        let response = proto::CreateTokenResponse {
            info: Some(proto::TokenInfo {
                id: "t1".into(),
                role: proto::Role::Admin as i32,
                owner: "root".into(),
                enabled: true,
                ..Default::default()
            }),
            token: "berth_adm_secret".into(),
        };
        let view = CreatedTokenView::from(response);
        let json = to_json(&view);
        assert_eq!(json["id"], "t1");
        assert_eq!(json["role"], "admin");
        assert_eq!(json["owner"], "root");
        assert_eq!(json["token"], "berth_adm_secret");
        assert_eq!(json["expires_at"], Value::Null);
        assert_eq!(view.table(), "berth_adm_secret\n");
        assert!(view.notice().contains("shown only once"));
    }

    #[test]
    fn roles_are_shown_by_name() {
        assert_eq!(role_name(proto::Role::Worker as i32), "worker");
    }
}
