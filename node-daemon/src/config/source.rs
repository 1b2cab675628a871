//! Where raw configuration values come from: the environment, over an optional YAML file.

use std::collections::BTreeMap;
use std::path::Path;

use super::{keys, ConfigError};

/// Raw string values by canonical `STS_*` key; environment entries win over the file.
#[derive(Debug, Default, Clone)]
pub struct RawValues {
    values: BTreeMap<String, String>,
    /// The keys looked up, for the test that every key in `keys` is read.
    #[cfg(test)]
    pub(super) asked: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl RawValues {
    /// Reads the YAML file (if any), then lays every known `STS_*` variable that `env`
    /// returns over it.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut raw = match file {
            Some(path) => Self::from_yaml_file(path)?,
            None => Self::default(),
        };
        for key in keys::names() {
            if let Some(value) = env(key) {
                raw.values.insert(key.to_string(), value);
            }
        }
        Ok(raw)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        #[cfg(test)]
        self.asked.borrow_mut().insert(key.to_string());
        self.values.get(key).map(String::as_str)
    }

    fn from_yaml_file(path: &Path) -> Result<Self, ConfigError> {
        let file_error = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        Self::from_yaml(&text).map_err(file_error)
    }

    /// Keys are the variable names, case-insensitive, with or without the `STS_`
    /// prefix (`api_key` and `STS_API_KEY` are the same key). Lists may be YAML
    /// sequences. Unknown keys are refused so that a typo is not silently ignored.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let mapping = match doc {
            serde_yaml::Value::Null => return Ok(Self::default()),
            serde_yaml::Value::Mapping(m) => m,
            _ => return Err("the top level must be a mapping of STS_* keys to values".into()),
        };
        let mut raw = Self::default();
        for (key, value) in mapping {
            let key = key
                .as_str()
                .ok_or_else(|| format!("key {key:?} is not a string"))?;
            let canonical = canonical_key(key).ok_or_else(|| {
                let known: Vec<&str> = keys::names().collect();
                format!("unknown key `{key}` (known: {})", known.join(", "))
            })?;
            raw.values
                .insert(canonical.to_string(), yaml_scalar_text(key, value)?);
        }
        Ok(raw)
    }
}

fn canonical_key(key: &str) -> Option<&'static str> {
    let upper = key.trim().to_ascii_uppercase();
    let prefixed = format!("STS_{upper}");
    let find = |wanted: &str| keys::names().find(|known| *known == wanted);
    find(&upper).or_else(|| find(&prefixed))
}

/// Turns a YAML value into the same text an environment variable would hold; a
/// sequence becomes a JSON array, which the list parser accepts.
fn yaml_scalar_text(key: &str, value: serde_yaml::Value) -> Result<String, String> {
    use serde_yaml::Value;
    match value {
        Value::String(s) => Ok(s),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Ok(String::new()),
        Value::Sequence(items) => {
            let items = items
                .into_iter()
                .map(|item| yaml_scalar_text(key, item))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(serde_json::to_string(&items).expect("strings always serialize"))
        }
        _ => Err(format!("`{key}` must be a scalar or a list")),
    }
}
