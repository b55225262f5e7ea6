//! Exit codes, the same for every subcommand.

/// Success.
pub const OK: u8 = 0;
/// The command ran and failed: invalid configuration, an unreachable service, a failed run.
pub const FAILURE: u8 = 1;
/// Bad usage, or a subcommand that is not available yet.
pub const USAGE: u8 = 2;
/// `setup --check`: the setup objects differ from the configuration.
pub const DRIFT: u8 = 3;
/// `authorize --wait`: the timeout passed with connections still pending.
pub const TIMED_OUT: u8 = 4;
