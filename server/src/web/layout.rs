//! The page frame: navigation, the signed-in viewer with sign-out, and the links to the
//! embedded stylesheet and script (`assets`).

use maud::{DOCTYPE, Markup, html};

use crate::web::assets::{script_url, style_url};
use crate::web::session::Viewer;

/// The areas in the navigation bar: (path, label).
pub const NAV: &[(&str, &str)] = &[
    ("/ui/queue", "Queue"),
    ("/ui/workers", "Workers"),
    ("/ui/templates", "Templates"),
    ("/ui/services", "Services"),
    ("/ui/triggers", "Triggers"),
    ("/ui/topics", "Topics"),
    ("/ui/artifacts", "Artifacts"),
];

/// A page for a signed-in viewer: `here` is the navigation entry to highlight.
pub fn page(viewer: &Viewer, here: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf" content=(viewer.csrf);
                title { (title) " · Berth" }
                link rel="stylesheet" href=(style_url());
                script src=(script_url()) defer {}
            }
            body {
                header.top {
                    strong { "Berth" }
                    nav {
                        @for (path, label) in NAV {
                            a href=(path) class=[(*path == here).then_some("here")] { (label) } " "
                        }
                    }
                    span.who #viewer {
                        (viewer.identity.name) " (" (viewer.identity.role) ")"
                    }
                    form.inline method="post" action="/ui/logout" {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button type="submit" #logout { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page with no viewer (the sign-in page).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Berth" }
                link rel="stylesheet" href=(style_url());
            }
            body { main { (body) } }
        }
    }
}

/// A hidden CSRF field for a form on a viewer's page.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}
