//! The web dashboard, without I/O: who may read it ([`auth`]), what each page shows ([`views`])
//! and the pages themselves ([`assets`]: HTML, CSS and the script that draws the charts; no
//! library, nothing fetched from the internet). The server is [`crate::runtime::dashboard`].

pub mod auth;
pub mod views;

/// The files the browser loads, inside the binary.
pub mod assets {
    /// The page every dashboard path answers with; its script reads the path.
    pub const INDEX: &str = include_str!("assets/index.html");
    /// The login page (`{{message}}` is replaced, escaped).
    pub const LOGIN: &str = include_str!("assets/login.html");
    /// The script: routing, fetching every two seconds, tables, the Elo chart, the lineage tree.
    pub const APP_JS: &str = include_str!("assets/app.js");
    /// The style sheet.
    pub const APP_CSS: &str = include_str!("assets/app.css");
}
