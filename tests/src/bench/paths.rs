//! Benchmarks of the other kernel paths.

use super::Bench;
use crate::support::Env;
use skyscope_abi::Error;

/// Runs the cases the filter selects.
pub fn run(_bench: &mut Bench, _env: &mut Env) -> Result<(), Error> {
    Ok(())
}
