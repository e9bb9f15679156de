//! The README's settings table matches `--help`: every variable is documented, and where it
//! has a row of its own the default shown is the one the code uses.

use validator::ValidatorSettings;

#[test]
fn the_readme_documents_every_setting_with_its_default() {
    let problems =
        bus_core::settings::readme_problems::<ValidatorSettings>(include_str!("../README.md"));
    assert!(problems.is_empty(), "README.md: {problems:#?}");
}
