//! The suite's one way of running a test on both storage engines.

use crate::common::{Storage, TestApp};

/// What a setup hands a test: the argument it takes, and whatever must
/// outlive the test's body (a temporary directory, a schema).
pub trait Fixture {
    type Arg;
    type Guard;
    fn split(self) -> (Self::Guard, Self::Arg);
}

impl Fixture for TestApp {
    type Arg = TestApp;
    type Guard = ();
    fn split(self) -> ((), TestApp) {
        ((), self)
    }
}

impl Fixture for Storage {
    type Arg = Storage;
    type Guard = ();
    fn split(self) -> ((), Storage) {
        ((), self)
    }
}

/// A guard kept alive beside the argument (the conformance suite's storage
/// and the store opened on it).
impl<G, A> Fixture for (G, A) {
    type Arg = A;
    type Guard = G;
    fn split(self) -> (G, A) {
        self
    }
}

/// Declares each listed `async fn name(arg)` as a test on both engines:
/// `…::sqlite::name` and `…::postgres::name`, the latter announced as
/// skipped when no PostgreSQL is configured (which fails under CI).
///
/// A setup is anything callable as `setup(Backend)` that returns a future
/// of `Option<impl Fixture>` (`None`: the engine is not configured), e.g.
/// `TestApp::start`, `Storage::new`, or a closure; the setup is evaluated
/// inside the generated tests, which see the calling module's items.
///
/// ```ignore
/// crate::on_both_engines!(TestApp::start => first_test, second_test);
/// crate::on_both_engines!(
///     small_pages: |b| TestApp::start_with(b, limits(1000, 64)),
///     large_pages: |b| TestApp::start_with(b, limits(1000, 4096)),
/// );
/// ```
#[macro_export]
macro_rules! on_both_engines {
    ($setup:expr => $($name:ident),+ $(,)?) => {
        $crate::on_both_engines!($($name: $setup),+);
    };
    ($($name:ident: $setup:expr),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    // The setup and the test resolve in the calling module
                    // (the glob is always used: it names the test).
                    use super::*;
                    let fixture = ($setup)($crate::common::Backend::Sqlite)
                        .await
                        .expect("SQLite is always available");
                    let (_guard, arg) = $crate::engines::Fixture::split(fixture);
                    $name(arg).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    use super::*;
                    match ($setup)($crate::common::Backend::Postgres).await {
                        Some(fixture) => {
                            let (_guard, arg) = $crate::engines::Fixture::split(fixture);
                            $name(arg).await;
                        }
                        None => $crate::common::announce_skip(
                            concat!(module_path!(), "::", stringify!($name)),
                            "TESSERA_TEST_DATABASE_URL is not set",
                        ),
                    }
                }
            )+
        }
    };
}
