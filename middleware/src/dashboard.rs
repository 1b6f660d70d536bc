//! The web dashboard: server-side pages and vendored static assets (placeholder routes until
//! the pages land).

use crate::app::AppState;
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(|| async { Redirect::temporary("/ui/") }))
}
