//! A posted HTML form's fields (`application/x-www-form-urlencoded`),
//! read by name; a field sent twice keeps its first value.

/// The fields of one form.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    pairs: Vec<(String, String)>,
}

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        Fields {
            pairs: url::form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    /// The field's value, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a field sent several times, blanks left out.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(n, v)| n == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// The field's value when sent and not blank, trimmed.
    pub fn filled(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Whether a checkbox was ticked.
    pub fn ticked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_decoded_and_the_first_value_wins() {
        let form = Fields::parse(b"sql=SELECT+1+%2B+1&csrf=abc&csrf=def&empty=+&all=on");
        assert_eq!(form.get("sql"), Some("SELECT 1 + 1"));
        assert_eq!(form.get("csrf"), Some("abc"));
        assert_eq!(form.filled("empty"), None);
        assert!(form.ticked("all") && !form.ticked("nope"));
        assert_eq!(form.all("csrf"), vec!["abc", "def"]);
    }
}
