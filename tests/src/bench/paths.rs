//! Benchmarks of the other kernel paths.

use super::Bench;
use super::BenchError;
use crate::support::Env;

/// Runs the cases the filter selects.
pub fn run(_bench: &mut Bench, _env: &mut Env) -> Result<(), BenchError> {
    Ok(())
}
