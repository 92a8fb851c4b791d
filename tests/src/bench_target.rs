//! A measured figure against its target, printed as one `target:` line. `cargo xtask bench`
//! gathers these lines from every benchmark into its closing summary, so a run's figures and
//! their ratios to the targets (all measured in that one run, on that machine) read in one place.

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// A rate or a ratio: the target is a floor.
    Higher,
    /// A time or a size: the target is a ceiling.
    Lower,
}

/// The `target:` line for `name` measured at `measured` (in `unit`) against `target`.
pub fn target_line(name: &str, measured: f64, unit: &str, target: f64, better: Better) -> String {
    let met = match better {
        Better::Higher => measured >= target,
        Better::Lower => measured <= target,
    };
    let sign = match better {
        Better::Higher => ">=",
        Better::Lower => "<=",
    };
    let verdict = if met { "met" } else { "MISSED" };
    format!(
        "target: {name}: {} {unit} (target {sign} {} {unit}; {:.2}x the target): {verdict}",
        figure(measured),
        figure(target),
        measured / target
    )
}

/// Prints [`target_line`].
pub fn print_target(name: &str, measured: f64, unit: &str, target: f64, better: Better) {
    println!("{}", target_line(name, measured, unit, target, better));
}

/// A figure with as many decimals as its size calls for.
fn figure(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_and_a_ceiling() {
        assert_eq!(
            target_line("accept / raw hyper", 0.18, "x", 0.25, Better::Higher),
            "target: accept / raw hyper: 0.180 x (target >= 0.250 x; 0.72x the target): MISSED"
        );
        assert_eq!(
            target_line("idle RSS, 1000 tenants", 150.0, "MiB", 200.0, Better::Lower),
            "target: idle RSS, 1000 tenants: 150 MiB (target <= 200 MiB; 0.75x the target): met"
        );
    }
}
