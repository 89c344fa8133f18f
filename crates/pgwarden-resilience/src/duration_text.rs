//! Short human renderings of durations for log lines and error messages ("40s", "10m30s").

use std::fmt;
use std::time::Duration;

/// Displays a duration rounded to whole seconds as `1h2m3s`, `10m`, `40s` (sub-second: `0s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_secs() + u64::from(self.0.subsec_millis() >= 500);
        let (hours, minutes, seconds) = (total / 3600, (total / 60) % 60, total % 60);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        if seconds > 0 || total == 0 {
            write!(f, "{seconds}s")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_compactly() {
        let text = |secs: u64| DurationText(Duration::from_secs(secs)).to_string();
        assert_eq!(text(0), "0s");
        assert_eq!(text(40), "40s");
        assert_eq!(text(600), "10m");
        assert_eq!(text(630), "10m30s");
        assert_eq!(text(3723), "1h2m3s");
        assert_eq!(DurationText(Duration::from_millis(1500)).to_string(), "2s");
    }
}
