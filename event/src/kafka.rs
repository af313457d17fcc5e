//! The TLS and SASL part of a Kafka client's settings, shared by the sensor and the collector so
//! both accept the same options and turn them into the same librdkafka settings. Credentials come
//! from the environment ([`USERNAME_ENV`], [`PASSWORD_ENV`]), read by [`KafkaSecurity::from_env`].

use std::path::PathBuf;

/// Values of `kafka.security_protocol` (librdkafka's `security.protocol`).
pub const SECURITY_PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
/// Values of `kafka.sasl_mechanism` (librdkafka's `sasl.mechanism`).
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
/// Where the SASL user name comes from: secrets never sit in config files.
pub const USERNAME_ENV: &str = "CANH_KAFKA_USERNAME";
pub const PASSWORD_ENV: &str = "CANH_KAFKA_PASSWORD";

/// How a client authenticates to Kafka and protects the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    pub protocol: String,
    pub sasl_mechanism: Option<String>,
    /// PEM file of the CAs that sign the brokers' certificates (default: the system's store).
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    pub ssl_key_location: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A setting that cannot work: which config field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SecurityError {
    pub field: &'static str,
    pub message: String,
}

impl KafkaSecurity {
    /// The settings of a config's `[kafka]` section, with the SASL credentials read from the
    /// environment (never from the config file).
    pub fn from_env(
        protocol: &str,
        sasl_mechanism: Option<&str>,
        ssl_ca_location: Option<&PathBuf>,
        ssl_certificate_location: Option<&PathBuf>,
        ssl_key_location: Option<&PathBuf>,
    ) -> KafkaSecurity {
        KafkaSecurity {
            protocol: protocol.to_owned(),
            sasl_mechanism: sasl_mechanism.map(str::to_owned),
            ssl_ca_location: ssl_ca_location.cloned(),
            ssl_certificate_location: ssl_certificate_location.cloned(),
            ssl_key_location: ssl_key_location.cloned(),
            username: std::env::var(USERNAME_ENV).ok(),
            password: std::env::var(PASSWORD_ENV).ok(),
        }
    }

    /// Reject what librdkafka would refuse or quietly do otherwise (a SASL protocol without a
    /// mechanism means GSSAPI to librdkafka; a certificate without its key is not mutual TLS).
    pub fn check(&self) -> Result<(), SecurityError> {
        let error = |field, message: String| Err(SecurityError { field, message });
        if !SECURITY_PROTOCOLS.contains(&self.protocol.as_str()) {
            return error(
                "kafka.security_protocol",
                format!("unknown protocol {:?}", self.protocol),
            );
        }
        let sasl = self.protocol.starts_with("sasl_");
        match &self.sasl_mechanism {
            Some(m) if !SASL_MECHANISMS.contains(&m.as_str()) => {
                return error("kafka.sasl_mechanism", format!("unknown mechanism {m:?}"));
            }
            Some(_) if !sasl => {
                return error(
                    "kafka.sasl_mechanism",
                    format!("set, but security_protocol {:?} has no SASL", self.protocol),
                );
            }
            None if sasl => {
                return error("kafka.sasl_mechanism", format!("{} needs one", self.protocol));
            }
            _ => {}
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return error(
                "kafka.ssl_certificate_location",
                "a client certificate and its key go together".into(),
            );
        }
        Ok(())
    }

    /// The librdkafka settings, as (name, value) pairs.
    pub fn client_settings(&self) -> Vec<(&'static str, String)> {
        let mut settings = vec![("security.protocol", self.protocol.clone())];
        let path = |p: &PathBuf| p.display().to_string();
        let optional = [
            ("sasl.mechanism", self.sasl_mechanism.clone()),
            ("sasl.username", self.username.clone()),
            ("sasl.password", self.password.clone()),
            ("ssl.ca.location", self.ssl_ca_location.as_ref().map(path)),
            ("ssl.certificate.location", self.ssl_certificate_location.as_ref().map(path)),
            ("ssl.key.location", self.ssl_key_location.as_ref().map(path)),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                settings.push((name, value));
            }
        }
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(protocol: &str, mechanism: Option<&str>) -> KafkaSecurity {
        KafkaSecurity {
            protocol: protocol.into(),
            sasl_mechanism: mechanism.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn every_protocol_and_mechanism_pair_is_checked() {
        assert_eq!(security("plaintext", None).check(), Ok(()));
        assert_eq!(security("ssl", None).check(), Ok(()));
        for mechanism in SASL_MECHANISMS {
            assert_eq!(security("sasl_plaintext", Some(mechanism)).check(), Ok(()));
            assert_eq!(security("sasl_ssl", Some(mechanism)).check(), Ok(()));
            assert!(security("plaintext", Some(mechanism)).check().is_err());
        }
        assert!(security("sasl_ssl", None).check().is_err());
        assert!(security("sasl_plaintext", Some("GSSAPI")).check().is_err());
        assert!(security("tls", None).check().is_err());
        let half = KafkaSecurity {
            ssl_certificate_location: Some("c.pem".into()),
            ..security("ssl", None)
        };
        assert_eq!(half.check().map_err(|e| e.field), Err("kafka.ssl_certificate_location"));
    }

    #[test]
    fn settings_carry_only_what_is_set() {
        let plain = security("plaintext", None).client_settings();
        assert_eq!(plain, vec![("security.protocol", "plaintext".to_string())]);
        let full = KafkaSecurity {
            ssl_ca_location: Some("/etc/ca.pem".into()),
            username: Some("u".into()),
            password: Some("p".into()),
            ..security("sasl_ssl", Some("SCRAM-SHA-256"))
        };
        let settings = full.client_settings();
        for (name, value) in [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
            ("ssl.ca.location", "/etc/ca.pem"),
        ] {
            assert!(settings.contains(&(name, value.to_string())), "{name} in {settings:?}");
        }
        assert_eq!(settings.len(), 5);
    }
}
