//! Assertions for scenarios: print where and why, then fail the scenario.

/// Fails the scenario with a message unless `cond` holds.
macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            skyscope_abi::println!(
                "  check failed at {}:{}: {}",
                file!(),
                line!(),
                format_args!($($arg)*)
            );
            return Err($crate::Failure);
        }
    };
}

/// Fails the scenario unless the two values are equal.
macro_rules! check_eq {
    ($left:expr, $right:expr) => {{
        let (left, right) = (&$left, &$right);
        check!(
            left == right,
            "{} is {:?}, expected {:?}",
            stringify!($left),
            left,
            right
        );
    }};
}

/// Fails the scenario unless `result` is `Ok`.
macro_rules! check_ok {
    ($result:expr) => {{
        let result = $result;
        check!(
            result.is_ok(),
            "{} failed: {:?}",
            stringify!($result),
            result
        );
    }};
}

/// Prints a failure message and evaluates to the scenario failure value,
/// for `map_err`.
macro_rules! fail {
    ($($arg:tt)*) => {{
        skyscope_abi::println!("  failed at {}:{}: {}", file!(), line!(), format_args!($($arg)*));
        $crate::Failure
    }};
}
