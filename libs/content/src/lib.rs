//! What Herald says and where it says it: the approved, versioned templates,
//! the routing rules of the SOPs' documentation matrix, the TwiML a call
//! reads out, the signatures on provider webhooks and on the links Herald
//! hands out, and the encoding of every value those links carry.

pub mod mailhook;
pub mod routing;
pub mod signature;
pub mod templates;
pub mod token;
pub mod twiml;
pub mod url;
