//! The devices allowlist on cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to
//! the workload's cgroup, the way runc and crun do it (v2 has no `devices.allow` file).
//!
//! No maintained crate assembles cgroup device programs (aya and libbpf-rs load compiled
//! objects; runc and crun emit these few instructions themselves), so this does too: the
//! program is pure data built by [`program`] and checked by a small interpreter in the tests.
//!
//! ```text
//! r2 = ctx->access_type & 0xffff     // BPF_DEVCG_DEV_BLOCK 1, CHAR 2
//! r3 = ctx->access_type >> 16        // BPF_DEVCG_ACC_MKNOD 1, READ 2, WRITE 4
//! r4 = ctx->major; r5 = ctx->minor
//! per rule: if type, access ⊆ allowed, major, minor match → return 1
//! return 0
//! ```

use super::devices::{Allow, Kind};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// One eBPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_W | BPF_MEM
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

fn access_bits(a: &Allow) -> i32 {
    i32::from(a.access.mknod) | (i32::from(a.access.read) << 1) | (i32::from(a.access.write) << 2)
}

/// The program allowing exactly `rules`.
pub fn program(rules: &[Allow]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules {
        let mut checks: Vec<(u8, u8, i32)> = Vec::new(); // (reg, scratch-mask?, value)
        let kind = match r.kind {
            Kind::Block => 1,
            Kind::Char => 2,
        };
        checks.push((2, 0, kind));
        checks.push((1, 1, 0)); // access: (r3 & !allowed) == 0, computed in r1
        if let Some(m) = r.major {
            checks.push((4, 0, m as i32));
        }
        if let Some(m) = r.minor {
            checks.push((5, 0, m as i32));
        }
        // Instructions in this block: 1 per check, +2 for the access computation, +2 to
        // return 1. A failed check jumps past the rest of the block.
        let len = checks.len() + 2 + 2;
        let mut at = 0;
        for (reg, is_access, value) in checks {
            if is_access == 1 {
                p.push(insn(MOV32_X, 1, 3, 0, 0));
                p.push(insn(AND32_K, 1, 0, 0, !access_bits(r) & 7));
                at += 2;
            }
            at += 1;
            p.push(insn(JNE_K, reg, 0, (len - at) as i16, value));
        }
        p.push(insn(MOV64_K, 0, 0, 0, 1));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, padded to its size.
#[repr(C)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _pad: [u8; 64],
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`, padded.
#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _pad: [u8; 108],
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` points to a fully initialised, padded `union bpf_attr` member whose
    // size is passed; the kernel only reads it (and the buffers it names, which outlive
    // the call).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads the program for `rules` and attaches it to the cgroup directory `cgroup`.
pub fn attach(cgroup: &std::path::Path, rules: &[Allow]) -> io::Result<()> {
    let prog = program(rules);
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..7].copy_from_slice(b"superd\0");
    let load_with = |log: &mut [u8]| {
        let attr = LoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: BPF_CGROUP_DEVICE,
            _pad: [0; 64],
        };
        bpf(BPF_PROG_LOAD, &attr)
    };
    // Without a log first (a verbose log that does not fit is itself an error, ENOSPC); on
    // failure again with one, to say why.
    let fd = load_with(&mut []).map_err(|e| {
        let mut log = vec![0u8; 64 << 10];
        let _ = load_with(&mut log);
        let text = String::from_utf8_lossy(&log);
        let text = text.trim_end_matches('\0').trim();
        let tail: String = text
            .chars()
            .rev()
            .take(1024)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        io::Error::new(
            e.kind(),
            format!("loading the device program: {e}; verifier: {tail}"),
        )
    })?;
    // SAFETY: a fresh fd from the kernel.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let dir = std::fs::File::open(cgroup)?;
    let attach = AttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        replace_bpf_fd: 0,
        _pad: [0; 108],
    };
    bpf(BPF_PROG_ATTACH, &attach)
        .map(|_| ())
        .map_err(|e| io::Error::new(e.kind(), format!("attaching the device program: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::devices::{allowlist, DEFAULT_ALLOWED};
    use super::*;
    use crate::manifest::DeviceAccess;

    /// Runs `prog` on a device access the way the kernel would (only what `program` emits).
    fn run(prog: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                AND32_K => r[dst] = u64::from(r[dst] as u32 & i.imm as u32),
                RSH32_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                MOV32_X => r[dst] = u64::from(r[src] as u32),
                MOV64_K => r[dst] = i.imm as i64 as u64,
                JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JNE_K => {}
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const CHAR: u32 = 2;
    const BLOCK: u32 = 1;
    const MKNOD: u32 = 1;
    const READ: u32 = 2;
    const WRITE: u32 = 4;

    #[test]
    fn the_default_program_allows_what_runc_allows() {
        let p = program(DEFAULT_ALLOWED);
        assert_eq!(run(&p, CHAR, READ | WRITE, 1, 3), 1, "null");
        assert_eq!(run(&p, CHAR, READ, 136, 7), 1, "pts/7");
        assert_eq!(run(&p, CHAR, MKNOD, 10, 229), 1, "mknod of anything");
        assert_eq!(run(&p, BLOCK, MKNOD, 8, 0), 1);
        assert_eq!(run(&p, CHAR, READ, 10, 229), 0, "fuse");
        assert_eq!(run(&p, CHAR, READ | WRITE, 10, 232), 0, "kvm");
        assert_eq!(run(&p, BLOCK, READ, 8, 0), 0, "sda");
        assert_eq!(run(&p, BLOCK, READ, 1, 3), 0, "block 1:3 is not null");
    }

    #[test]
    fn an_opt_in_allows_only_its_access() {
        let kmsg = super::super::devices::HostDevice {
            allow: Allow {
                kind: Kind::Char,
                major: Some(1),
                minor: Some(11),
                access: DeviceAccess {
                    read: true,
                    write: false,
                    mknod: false,
                },
            },
            rel: "kmsg".into(),
            mode: 0o644,
        };
        let p = program(&allowlist(&[kmsg]));
        assert_eq!(run(&p, CHAR, READ, 1, 11), 1);
        assert_eq!(run(&p, CHAR, WRITE, 1, 11), 0);
        assert_eq!(run(&p, CHAR, READ | WRITE, 1, 11), 0);
        assert_eq!(
            run(&p, CHAR, MKNOD, 1, 11),
            1,
            "the default lets every node be made"
        );
    }
}
