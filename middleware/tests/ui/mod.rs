//! Helpers of the dashboard tests: a blocking HTTP client, a W3C WebDriver client for headless
//! Chromium, and an in-process ledger + gateway.
#![allow(dead_code)]

#[path = "../../../runtime/tests/common/contracts.rs"]
pub mod contracts;
pub mod http;
pub mod net;
pub mod webdriver;
