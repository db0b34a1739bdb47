//! The harness itself: a server starts on a fresh database and answers an admin call.

use berth_common::proto::ListTokensRequest;
use berth_tests::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn server_starts_on_a_fresh_database_with_one_admin_token() {
    let server = TestServer::start().await;
    let tokens = server
        .tokens(&server.admin_token)
        .await
        .list_tokens(ListTokensRequest {})
        .await
        .expect("list tokens")
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].owner, "admin");
    server.stop().await;
}
