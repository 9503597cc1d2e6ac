//! Compile-time proofs about the store's API, each pinned with the compiler
//! message it must fail with (a bare `compile_fail` would pass on any error).

#[test]
fn grants_carry_their_action() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/read_grant_cannot_write.rs");
}
