//! Rule-based verifiers: extraction, normalisation and equivalence, configured by
//! `reward_rules/*.toml`. (Being built: issue 3.)
