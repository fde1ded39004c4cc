//! The commands beside the daemon: `check` (is this config ready to run?) and `status` (where is
//! every partition?).

pub mod check;
pub mod status;
