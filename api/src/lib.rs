//! The HTTP contract every gata route shares.
//!
//! - [`ApiError`]: what a crate's error says about itself (status, stable code, details,
//!   retry delay); [`respond`] turns it into the one error body,
//!   `{"error": {"code", "message", "details"?, "request_id"?}}`.
//! - A server-side failure (5xx) is logged with its cause under the request's id, and the
//!   caller gets a generic message with that id, never the cause.
//! - [`JsonBody`]: the one JSON body extractor; a body that does not parse or fit the type is
//!   answered in the same shape.
//! - [`openapi`]: the API description, generated from the routes and their types.
//! - [`request_id::assign`]: the middleware that gives every request an id (the caller's
//!   `x-request-id` when it is sane), puts it on the log span and on the response.

pub mod error;
pub mod json;
pub mod openapi;
pub mod request_id;

pub use error::{ApiError, Problem, public_message, respond};
pub use json::{JsonBody, PathParams};
