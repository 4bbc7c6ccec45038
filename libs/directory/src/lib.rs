//! Who Herald reaches: the contact directory, recipient groups and the
//! coordinators allowed to start broadcasts, read from the files operators
//! keep them in and stored in Redis by their one owner (intake); every
//! other service reads them.

pub mod contacts;
pub mod coordinators;
pub mod groups;
mod listfile;
mod records;
pub mod validate;
mod wire;
