//! The README's settings table matches `--help`: every variable is documented, and where it
//! has a row of its own the default shown is the one the code uses.

use bus_core::settings::env_vars;
use feature_builder::FeatureBuilderSettings;

#[test]
fn the_readme_documents_every_setting_with_its_default() {
    let readme = include_str!("../README.md");
    for (name, default) in env_vars::<FeatureBuilderSettings>() {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not document {name}"
        );
        let row = format!("| `{name}` |");
        if let Some(line) = readme.lines().find(|l| l.starts_with(&row)) {
            let shown = line[row.len()..].split('|').next().unwrap_or("").trim();
            let expected = if default.is_empty() {
                "unset"
            } else {
                &default
            };
            assert_eq!(shown.trim_matches('`'), expected, "default of {name}");
        }
    }
}
