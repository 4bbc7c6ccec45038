//! What Herald says and where it says it: the approved, versioned templates,
//! the routing rules of the SOPs' documentation matrix, the TwiML a call
//! reads out, and the signatures on provider webhooks and on the links
//! Herald hands out.

pub mod routing;
pub mod signature;
pub mod templates;
pub mod token;
pub mod twiml;
