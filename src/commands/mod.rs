//! The commands beside the daemon: `check` (is this config ready to run?), `status` (where is
//! every partition?) and the hidden `generate-assets` (man page and completions for the package).

pub mod assets;
pub mod check;
pub mod status;
