//! Variables `tessera run` never sets from a secret, even when the person
//! running the workload names them.
//!
//! The first line of defence is elsewhere: no bare variable is set unless
//! that person named it (`--plain VAR=SECRET`). This is the second: a
//! secret's value is chosen by whoever may write secrets, so a variable
//! whose value programs obey as code, as a place to load code from, or as
//! whom to trust and talk to would hand that writer the workload. The rule:
//! **a variable read by the dynamic loader, the C library, a shell or an
//! interpreter at start, one naming a command that tools run, or one that
//! decides which servers a program trusts or where its traffic goes** is
//! refused. Each family below carries the reason shown in the error.
//! Documented in docs/delivery.md ("Variables `tessera run` refuses"); a
//! test keeps the two in step.

/// A family of refused variables: name patterns (exact, `PREFIX*` or
/// `*SUFFIX`, compared without regard to case) and why.
pub struct Family {
    pub patterns: &'static [&'static str],
    pub reason: &'static str,
}

pub const FAMILIES: &[Family] = &[
    Family {
        patterns: &["LD_*", "DYLD_*"],
        reason: "the dynamic loader reads it before the program starts and can load any library into it",
    },
    Family {
        patterns: &[
            "GLIBC_TUNABLES",
            "GCONV_PATH",
            "LOCPATH",
            "NLSPATH",
            "MALLOC_*",
            "HOSTALIASES",
            "RES_OPTIONS",
            "LOCALDOMAIN",
            "TZDIR",
        ],
        reason: "the C library reads it in every program: it names files to load or changes how names resolve",
    },
    Family {
        patterns: &["PATH", "HOME", "TMPDIR", "CDPATH", "XDG_*"],
        reason: "it decides where programs find their commands, settings and files",
    },
    Family {
        patterns: &[
            "ENV",
            "BASH_ENV",
            "BASH_FUNC_*",
            "SHELL",
            "SHELLOPTS",
            "BASHOPTS",
            "IFS",
            "PS4",
            "PROMPT_COMMAND",
            "ZDOTDIR",
        ],
        reason: "shells run code from it, or from the file it names",
    },
    Family {
        patterns: &[
            "PYTHON*",
            "PERL5*",
            "PERLLIB",
            "PERL_*",
            "RUBY*",
            "GEM_*",
            "BUNDLE_*",
            "NODE_*",
            "NPM_CONFIG_*",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "JDK_JAVA_OPTIONS",
            "CLASSPATH",
            "LUA_*",
            "PHPRC",
            "PHP_INI_SCAN_DIR",
        ],
        reason: "an interpreter reads it at start: it can make it load or run other code",
    },
    Family {
        patterns: &[
            "GIT_*",
            "LESSOPEN",
            "LESSCLOSE",
            "LESSEDIT",
            "LESSKEY*",
            "PAGER",
            "MANPAGER",
            "EDITOR",
            "VISUAL",
            "BROWSER",
            "*_ASKPASS",
        ],
        reason: "tools run the command it names, or take settings from it that do",
    },
    Family {
        patterns: &[
            "SSL_CERT_*",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
            "*_PROXY",
        ],
        reason: "it decides which servers a program trusts or where its traffic goes",
    },
];

fn matches(pattern: &str, upper: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        upper.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        upper.ends_with(suffix)
    } else {
        upper == pattern
    }
}

/// Why a secret may not set `var`, or `None` when it may.
pub fn refusal(var: &str) -> Option<&'static str> {
    let upper = var.to_ascii_uppercase();
    FAMILIES
        .iter()
        .find(|f| f.patterns.iter().any(|p| matches(p, &upper)))
        .map(|f| f.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_cover_loaders_shells_interpreters_tools_and_traffic() {
        for var in [
            "LD_PRELOAD",
            "ld_library_path",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "GLIBC_TUNABLES",
            "Path",
            "BASH_ENV",
            "BASH_FUNC_ls%%",
            "PROMPT_COMMAND",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "NODE_OPTIONS",
            "JAVA_TOOL_OPTIONS",
            "GIT_CONFIG_COUNT",
            "GIT_CONFIG_KEY_0",
            "GIT_SSH_COMMAND",
            "LESSOPEN",
            "SSH_ASKPASS",
            "https_proxy",
            "SSL_CERT_FILE",
        ] {
            assert!(refusal(var).is_some(), "{var}");
        }
        for var in [
            "HF_TOKEN",
            "DATABASE_URL",
            "TRUSS_SECRET_LD_PRELOAD",
            "API_KEY",
            "PROXYED",
        ] {
            assert!(refusal(var).is_none(), "{var}");
        }
    }

    /// Every pattern is listed in docs/delivery.md's table, and the table
    /// lists nothing else.
    #[test]
    fn the_docs_list_exactly_these_patterns() {
        let doc = include_str!("../../../../docs/delivery.md");
        let start = doc
            .find("<a id=\"refused-variables\"></a>")
            .expect("the section's anchor");
        let listed: std::collections::BTreeSet<&str> = doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .filter_map(|row| row.split('|').nth(1))
            .flat_map(|cell| cell.split('`').skip(1).step_by(2))
            .collect();
        let code: std::collections::BTreeSet<&str> = FAMILIES
            .iter()
            .flat_map(|f| f.patterns.iter().copied())
            .collect();
        assert_eq!(listed, code, "docs/delivery.md and FAMILIES differ");
    }
}
