//! Guest exit benchmarks.

use super::Bench;
use crate::support::Env;
use skyscope_abi::Error;

/// Runs the guest cases the filter selects.
pub fn run(_bench: &mut Bench, _env: &mut Env) -> Result<(), Error> {
    Ok(())
}
