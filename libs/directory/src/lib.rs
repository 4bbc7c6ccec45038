//! Who Herald reaches: the contact directory, recipient groups and the
//! coordinators allowed to start broadcasts, read from the files operators
//! keep them in and stored in Redis by their one owner (intake); every
//! other service reads them. Also how a presented secret (a coordinator's
//! token, a calling system's API key) is checked against the hashes the
//! configuration holds.

pub mod contacts;
pub mod coordinators;
pub mod credentials;
pub mod groups;
mod listfile;
mod records;
pub mod safeguards;
pub mod validate;
mod wire;
