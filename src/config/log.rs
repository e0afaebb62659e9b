//! `[log]`: how `mailtrack serve` writes its logs, and how much of a client's address they keep.

use serde::Deserialize;

use super::server::Refusal;

/// The log format when none is configured: text reads best on a terminal, where the embedded
/// default is run; production configs choose `json` for their log pipeline.
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;

/// Whether logs keep full client addresses when not configured: no. A truncated address
/// (/24 for IPv4, /48 for IPv6) is enough to follow an abuse pattern and is not personal data
/// in most readings; full addresses are kept in events, where the sender asked for them.
pub const DEFAULT_FULL_CLIENT_IP: bool = false;

/// `[log]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// Whether logs show full client addresses rather than truncated ones.
    pub full_client_ip: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: DEFAULT_LOG_FORMAT,
            full_client_ip: DEFAULT_FULL_CLIENT_IP,
        }
    }
}

/// `[log]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    format: Option<String>,
    full_client_ip: Option<bool>,
}

impl RawLog {
    /// Validates `[log]`.
    pub(super) fn validate(self) -> Result<LogConfig, Refusal> {
        let format = match self.format.as_deref() {
            None => DEFAULT_LOG_FORMAT,
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err((
                    "log.format",
                    format!("{other:?} is not \"text\" or \"json\""),
                ))
            }
        };
        Ok(LogConfig {
            format,
            full_client_ip: self.full_client_ip.unwrap_or(DEFAULT_FULL_CLIENT_IP),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_text_or_json() {
        let parse = |text: &str| toml::from_str::<RawLog>(text).unwrap().validate();
        assert_eq!(parse("").unwrap(), LogConfig::default());
        assert_eq!(parse("format = \"json\"").unwrap().format, LogFormat::Json);
        assert_eq!(parse("format = \"xml\"").unwrap_err().0, "log.format");
    }
}
