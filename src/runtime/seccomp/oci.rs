//! OCI runtime-spec / Docker seccomp JSON profiles → [`Profile`].
//!
//! The OCI fields (`defaultAction`, `defaultErrnoRet`, `syscalls[].names/action/errnoRet/
//! args`) and Docker's conditional rules (`includes`/`excludes` by `caps`, `arches` and
//! `minKernel`) are understood; `architectures`, `flags` and unknown fields are ignored.
//! A rule is kept when the workload has every capability it `includes` and none it
//! `excludes`.

use super::{Action, ArgCond, Cmp, Profile, Rule};
use serde::Deserialize;

/// Largest profile file read.
pub const MAX_PROFILE_BYTES: usize = 1 << 20;
/// Most rules a profile may have.
const MAX_RULES: usize = 10_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Json {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Vec<JsonRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonRule {
    #[serde(default)]
    names: Vec<String>,
    /// The older single-name form.
    name: Option<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<JsonArg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

fn action(name: &str, errno: Option<u32>) -> Result<Action, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        other => return Err(format!("action {other} is not supported")),
    })
}

fn cmp(a: &JsonArg) -> Result<ArgCond, String> {
    if a.index > 5 {
        return Err(format!("argument index {} is out of range 0-5", a.index));
    }
    let cmp = match a.op.as_str() {
        "SCMP_CMP_EQ" => Cmp::Eq(a.value),
        "SCMP_CMP_NE" => Cmp::Ne(a.value),
        "SCMP_CMP_LT" => Cmp::Lt(a.value),
        "SCMP_CMP_LE" => Cmp::Le(a.value),
        "SCMP_CMP_GT" => Cmp::Gt(a.value),
        "SCMP_CMP_GE" => Cmp::Ge(a.value),
        "SCMP_CMP_MASKED_EQ" => Cmp::MaskedEq {
            mask: a.value,
            value: a.value_two,
        },
        other => return Err(format!("comparison {other} is not supported")),
    };
    Ok(ArgCond {
        index: a.index,
        cmp,
    })
}

/// This machine's architecture as profiles name it.
fn arch_names() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["amd64", "x86_64", "SCMP_ARCH_X86_64"],
        "aarch64" => &["arm64", "aarch64", "SCMP_ARCH_AARCH64"],
        _ => &[],
    }
}

/// `(major, minor)` of a kernel release such as `6.1.0-26-cloud-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn applies(rule: &JsonRule, caps: &[&str], kernel: Option<(u32, u32)>) -> bool {
    let inc = &rule.includes;
    let exc = &rule.excludes;
    let arches = arch_names();
    let has_cap = |c: &String| caps.iter().any(|have| have.eq_ignore_ascii_case(c));
    let on_arch = |a: &String| arches.iter().any(|have| have.eq_ignore_ascii_case(a));
    let kernel_at_least =
        |min: &Option<String>| match (min.as_deref().and_then(kernel_version), kernel) {
            (Some(min), Some(k)) => k >= min,
            (Some(_), None) => false,
            (None, _) => true,
        };
    inc.caps.iter().all(has_cap)
        && (inc.arches.is_empty() || inc.arches.iter().any(on_arch))
        && kernel_at_least(&inc.min_kernel)
        && !exc.caps.iter().any(has_cap)
        && !exc.arches.iter().any(on_arch)
        && (exc.min_kernel.is_none() || !kernel_at_least(&exc.min_kernel))
}

/// Parses a profile for a workload holding `caps` (names such as `CAP_CHOWN`) on a kernel
/// whose release is `kernel` (`uname -r`).
pub fn parse_profile(json: &[u8], caps: &[&str], kernel: &str) -> Result<Profile, String> {
    if json.len() > MAX_PROFILE_BYTES {
        return Err(format!("larger than {MAX_PROFILE_BYTES} bytes"));
    }
    let doc: Json =
        serde_json::from_slice(json).map_err(|e| format!("not a seccomp profile: {e}"))?;
    if doc.syscalls.len() > MAX_RULES {
        return Err(format!("more than {MAX_RULES} syscall rules"));
    }
    let kernel = kernel_version(kernel);
    let default = action(&doc.default_action, doc.default_errno_ret)
        .map_err(|e| format!("defaultAction: {e}"))?;
    let mut rules = Vec::new();
    for (i, r) in doc.syscalls.iter().enumerate() {
        if !applies(r, caps, kernel) {
            continue;
        }
        let at = |e: String| format!("syscalls[{i}]: {e}");
        let mut names = r.names.clone();
        names.extend(r.name.clone());
        rules.push(Rule {
            names,
            action: action(&r.action, r.errno_ret).map_err(at)?,
            args: r
                .args
                .iter()
                .map(cmp)
                .collect::<Result<_, _>>()
                .map_err(at)?,
        });
    }
    Ok(Profile { default, rules })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERISH: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    }"#;

    #[test]
    fn docker_style_conditions_follow_caps_and_kernel() {
        let p = parse_profile(DOCKERISH.as_bytes(), &["CAP_SYS_CHROOT"], "6.1.0-26-amd64").unwrap();
        assert_eq!(p.default, Action::Errno(1));
        let names: Vec<&str> = p
            .rules
            .iter()
            .flat_map(|r| r.names.iter().map(String::as_str))
            .collect();
        assert_eq!(
            names,
            [
                "read",
                "write",
                "chroot",
                "ptrace",
                "clone3",
                "personality",
                "clone"
            ]
        );
        assert_eq!(p.rules[3].action, Action::Errno(38));
        assert_eq!(
            p.rules[5].args[0].cmp,
            Cmp::MaskedEq {
                mask: 2114060288,
                value: 0
            }
        );
        let old = parse_profile(DOCKERISH.as_bytes(), &[], "4.4.0").unwrap();
        assert!(!old
            .rules
            .iter()
            .any(|r| r.names == ["ptrace"] || r.names == ["chroot"]));
        super::super::compile(&p).unwrap();
    }

    #[test]
    fn bad_profiles_say_where() {
        let e = parse_profile(b"{\"defaultAction\": \"SCMP_ACT_NOTIFY\"}", &[], "6.1").unwrap_err();
        assert!(
            e.contains("defaultAction: action SCMP_ACT_NOTIFY is not supported"),
            "{e}"
        );
        let e = parse_profile(
            br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#,
            &[],
            "6.1",
        )
        .unwrap_err();
        assert!(e.starts_with("syscalls[0]: argument index 9"), "{e}");
        assert!(parse_profile(b"[]", &[], "6.1")
            .unwrap_err()
            .contains("not a seccomp profile"));
        assert_eq!(kernel_version("6.1.0-26-cloud-amd64"), Some((6, 1)));
    }
}
