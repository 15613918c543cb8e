//! Seccomp: the default allowlist, OCI/Docker JSON profiles, and their compilation to BPF with
//! seccompiler (rust-vmm's pure-Rust compiler; no C libseccomp).
//!
//! A profile says, per syscall and optional argument conditions, what happens: allow, fail
//! with an errno, kill. seccompiler builds filters with one match and one mismatch action, so
//! a profile becomes a stack of filters the kernel runs together, taking the most restrictive
//! verdict (and, between two errno verdicts, the one of the filter installed last):
//! 1. every rule's syscall (whatever its action) → allow; anything else → the default action;
//! 2. per other action in the rules: that action's rules → the action; anything else → allow.
//!
//! A call matching a rule therefore gets the rule's action, and any other call the default.
//! Compiled in superd (once, for the default) and installed by the shim just before `execve`.

mod default;
mod oci;

pub use default::default_profile;
pub use oci::{parse_profile, MAX_PROFILE_BYTES};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::str::FromStr;

/// What a matching call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Run it.
    Allow,
    /// Fail with this errno.
    Errno(u32),
    /// Kill the thread.
    KillThread,
    /// Kill the process.
    KillProcess,
    /// SIGSYS.
    Trap,
    /// Run it and log it.
    Log,
}

impl From<Action> for SeccompAction {
    fn from(a: Action) -> SeccompAction {
        match a {
            Action::Allow => SeccompAction::Allow,
            Action::Errno(e) => SeccompAction::Errno(e),
            Action::KillThread => SeccompAction::KillThread,
            Action::KillProcess => SeccompAction::KillProcess,
            Action::Trap => SeccompAction::Trap,
            Action::Log => SeccompAction::Log,
        }
    }
}

/// A comparison of one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `arg == v`.
    Eq(u64),
    /// `arg != v`.
    Ne(u64),
    /// `arg < v`.
    Lt(u64),
    /// `arg <= v`.
    Le(u64),
    /// `arg > v`.
    Gt(u64),
    /// `arg >= v`.
    Ge(u64),
    /// `arg & mask == v`.
    MaskedEq {
        /// The bits compared.
        mask: u64,
        /// Their expected value.
        value: u64,
    },
}

/// One condition on argument `index` (0-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCond {
    /// The argument.
    pub index: u8,
    /// How it is compared.
    pub cmp: Cmp,
}

/// Calls to any of `names` whose arguments meet every condition get `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Syscall names; names this architecture lacks are skipped.
    pub names: Vec<String>,
    /// The verdict.
    pub action: Action,
    /// Conditions, all of which must hold (none: every call).
    pub args: Vec<ArgCond>,
}

/// A whole profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// What calls no rule matches get.
    pub default: Action,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// A profile that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// seccompiler refused a filter.
    #[error("compiling the seccomp filter: {0}")]
    Backend(String),
    /// This machine's architecture has no seccompiler target.
    #[error("seccomp filters are not supported on {0}")]
    Arch(&'static str),
}

fn target_arch() -> Result<TargetArch, CompileError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| CompileError::Arch(std::env::consts::ARCH))
}

fn condition(c: &ArgCond) -> Result<SeccompCondition, CompileError> {
    let (op, value) = match c.cmp {
        Cmp::Eq(v) => (SeccompCmpOp::Eq, v),
        Cmp::Ne(v) => (SeccompCmpOp::Ne, v),
        Cmp::Lt(v) => (SeccompCmpOp::Lt, v),
        Cmp::Le(v) => (SeccompCmpOp::Le, v),
        Cmp::Gt(v) => (SeccompCmpOp::Gt, v),
        Cmp::Ge(v) => (SeccompCmpOp::Ge, v),
        Cmp::MaskedEq { mask, value } => (SeccompCmpOp::MaskedEq(mask), value),
    };
    SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| CompileError::Backend(e.to_string()))
}

/// The rules of `rules` as seccompiler wants them: syscall number → alternatives (an empty
/// list matches every call of that syscall). Unknown names are skipped.
fn rule_map<'a>(
    rules: impl Iterator<Item = &'a Rule>,
) -> Result<BTreeMap<i64, Vec<SeccompRule>>, CompileError> {
    // None: unconditional (wins over any conditional alternative).
    let mut map: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for rule in rules {
        let compiled = if rule.args.is_empty() {
            None
        } else {
            let conds = rule.args.iter().map(condition).collect::<Result<_, _>>()?;
            Some(SeccompRule::new(conds).map_err(|e| CompileError::Backend(e.to_string()))?)
        };
        for name in &rule.names {
            let Ok(sysno) = syscalls::Sysno::from_str(name) else {
                continue; // not on this architecture (as libseccomp and runc do)
            };
            let slot = map
                .entry(i64::from(sysno.id()))
                .or_insert_with(|| Some(Vec::new()));
            match (&compiled, slot.as_mut()) {
                (None, _) => *slot = None,
                (Some(r), Some(alts)) => alts.push(r.clone()),
                (Some(_), None) => {}
            }
        }
    }
    Ok(map
        .into_iter()
        .map(|(nr, alts)| (nr, alts.unwrap_or_default()))
        .collect())
}

fn build(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: Action,
    on_match: Action,
    arch: TargetArch,
) -> Result<BpfProgram, CompileError> {
    let filter = SeccompFilter::new(rules, mismatch.into(), on_match.into(), arch)
        .map_err(|e| CompileError::Backend(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| CompileError::Backend(e.to_string()))
}

/// Compiles `profile` into the filters to install, in order (see the module docs). An empty
/// list means nothing to install (an all-allow profile).
pub fn compile(profile: &Profile) -> Result<Vec<BpfProgram>, CompileError> {
    let arch = target_arch()?;
    let mut out = Vec::new();
    if profile.default != Action::Allow {
        let all = rule_map(profile.rules.iter())?;
        out.push(build(all, profile.default, Action::Allow, arch)?);
    }
    let mut actions: Vec<Action> = Vec::new();
    for r in &profile.rules {
        if r.action != Action::Allow && !actions.contains(&r.action) {
            actions.push(r.action);
        }
    }
    for action in actions {
        let rules = rule_map(profile.rules.iter().filter(|r| r.action == action))?;
        if rules.is_empty() {
            continue;
        }
        out.push(build(rules, Action::Allow, action, arch)?);
    }
    Ok(out)
}

/// A compiled program as plain numbers, for the sync socket: `(code, jt, jf, k)`.
pub type WireProgram = Vec<(u16, u8, u8, u32)>;

/// To the wire form.
pub fn to_wire(progs: &[BpfProgram]) -> Vec<WireProgram> {
    progs
        .iter()
        .map(|p| p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect())
        .collect()
}

/// Installs the wire-form programs on the calling thread, in order (sets `no_new_privs`).
pub fn install(progs: &[WireProgram]) -> Result<(), String> {
    for p in progs {
        let prog: BpfProgram = p
            .iter()
            .map(|&(code, jt, jf, k)| seccompiler::sock_filter { code, jt, jf, k })
            .collect();
        seccompiler::apply_filter(&prog).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_compiles_to_a_small_stack() {
        let progs = compile(&default_profile()).unwrap();
        assert_eq!(progs.len(), 2, "allowlist + ENOSYS for clone3");
        let total: usize = progs.iter().map(Vec::len).sum();
        assert!(
            total < 4096,
            "{total} instructions (the kernel's limit is 4096 each)"
        );
    }

    #[test]
    fn an_allow_default_with_one_errno_rule_is_one_filter() {
        let p = Profile {
            default: Action::Allow,
            rules: vec![Rule {
                names: vec!["getcwd".into(), "no_such_syscall".into()],
                action: Action::Errno(13),
                args: vec![],
            }],
        };
        assert_eq!(compile(&p).unwrap().len(), 1);
        let none = Profile {
            default: Action::Allow,
            rules: vec![],
        };
        assert!(compile(&none).unwrap().is_empty());
    }

    #[test]
    fn unconditional_rules_win_over_conditional_ones() {
        let cond = Rule {
            names: vec!["socket".into()],
            action: Action::Allow,
            args: vec![ArgCond {
                index: 0,
                cmp: Cmp::Ne(40),
            }],
        };
        let any = Rule {
            args: vec![],
            ..cond.clone()
        };
        let map = rule_map([cond.clone(), any].iter()).unwrap();
        assert_eq!(map.values().next().map(Vec::len), Some(0));
        let map = rule_map([cond.clone(), cond].iter()).unwrap();
        assert_eq!(map.values().next().map(Vec::len), Some(2));
    }
}
