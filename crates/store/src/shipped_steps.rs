//! The schema steps that have shipped, pinned by their SHA-256, so that
//! "never edit a shipped step" is checked rather than only stated: a store
//! that applied a step never runs it again, so an edited step would leave
//! old stores and new ones with different schemas.
//!
//! Adding a step: append its line here (the failing test prints it).

/// (engine, step, SHA-256 of the step's SQL as embedded).
#[rustfmt::skip]
const SHIPPED: &[(&str, i64, &str)] = &[
    ("sqlite", 1, "a918cd89088edc113cfffb0953335c836a7861b0072a966d91efb7bda01af5e8"),
    ("sqlite", 2, "43db5f1937418d8187aa191da8e5ba620fda9471552ccc440b1f5f924f7e0594"),
    ("sqlite", 3, "d9fcbd1714631703224ae6d1d80544adf825cf2aed381742e25ed2bac2823b86"),
    ("sqlite", 4, "a34f3109e32eb3d3730d01f66a46de909d1b17549e37054555b26a6c7c7e16be"),
    ("sqlite", 5, "111c17a8da001771c2aca4174a4b9c77c8b637cecc13630b366128c871b21a6f"),
    ("sqlite", 6, "22dfe1a1e909e67f0d598c66181c6384c6f2cd7e5afdbe951c3337ee4101f3d5"),
    ("sqlite", 7, "740807fab0ef3cdcc965cb0d480ae32c803eac86b87d899f5776d0b745b339dc"),
    ("sqlite", 8, "90e23792e5d4b8da914e1fd3e6f5c835bc33dc846c6612e9660b0422e399995b"),
    ("sqlite", 9, "7988abf80f9b50d9e9a88a1b0da69e01097414f476e84db5abf9d86ffe551bca"),
    ("sqlite", 10, "c4f49bc9caf3af58f688923c67e09e67dd4c251455e90e10f0a3b1cd99d7b467"),
    ("sqlite", 12, "a7319b9411a2818f30ea9fa00e45fbfd03abe392d270522516120e548e9dbde7"),
    ("sqlite", 13, "7a82994c45b7fa44b87a9d6b9fce1cb6e641224640215d720530a06f31fe54d7"),
    ("postgres", 1, "f666e1bd81c4ccf66174ba35803f73845eed743093c2ea6118bdf9b7903e5ef4"),
    ("postgres", 2, "aa6f9a75a23c577dd859b24d8b752d724b01bd034997be67dc2032502b36d7d1"),
    ("postgres", 3, "83b25aef18643236e6ad6e1e963418ab62eefbc0d42abb9c26aa7e26d44cf8d0"),
    ("postgres", 4, "e65b7aaf90366178b3e61a856237ab453c443cda5ad49b6a8083f9f72e011744"),
    ("postgres", 5, "111c17a8da001771c2aca4174a4b9c77c8b637cecc13630b366128c871b21a6f"),
    ("postgres", 6, "f657a2e8ae843c7d15ce0f55487dc3ce2fbf9aee42518b07c5bb657e782c5286"),
    ("postgres", 7, "4fda8f6e49c8b72bf7e1ed6a8da21571de983862adfaa2c11455a443eedfcf69"),
    ("postgres", 8, "d3b87015ef25e804f3a963848ebfe111c6a2bd4c9bac3795af4d3419e0e56df6"),
    ("postgres", 9, "c9478a23a1a2ddec014dc90a73203652e947d7f2efd006982e9222e14e66f535"),
    ("postgres", 10, "fc8847d8cfc5ba9cd85b43ae6b6778fdef9994d2fec353fb74c958ede32a2f43"),
    ("postgres", 12, "0fe5bd503651556bbd2b915fc3aabd4474b0a98ca4c112346a3825d87b3d99d6"),
    ("postgres", 13, "7a82994c45b7fa44b87a9d6b9fce1cb6e641224640215d720530a06f31fe54d7"),
];

/// Fails, naming the step, when an embedded step differs from what shipped
/// or is missing from [`SHIPPED`], or a shipped step is no longer embedded.
pub(crate) fn assert_unchanged(engine: &str, steps: &[(i64, &str)]) {
    use sha2::{Digest, Sha256};
    for (step, sql) in steps {
        let hash = hex::encode(Sha256::digest(sql.as_bytes()));
        let pinned = SHIPPED
            .iter()
            .find(|(e, s, _)| *e == engine && s == step)
            .map(|(_, _, h)| *h);
        match pinned {
            Some(pinned) => assert_eq!(
                pinned, hash,
                "{engine} schema step {step} was edited after it shipped: add a new step instead"
            ),
            None => panic!(
                "{engine} schema step {step} is not pinned; once it is final, add to SHIPPED in \
                 src/store/shipped_steps.rs: (\"{engine}\", {step}, \"{hash}\"),"
            ),
        }
    }
    for (e, step, _) in SHIPPED.iter().filter(|(e, _, _)| *e == engine) {
        assert!(
            steps.iter().any(|(s, _)| s == step),
            "{e} schema step {step} shipped but is no longer embedded"
        );
    }
}
