//! Guest exit benchmarks.

use super::Bench;
use super::BenchError;
use crate::support::Env;

/// Runs the guest cases the filter selects.
pub fn run(_bench: &mut Bench, _env: &mut Env) -> Result<(), BenchError> {
    Ok(())
}
