//! Booting images in QEMU and reading their console.

use crate::{RunArgs, build, bundle, payload, setup, toolchain};
use regex::Regex;
use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

/// The arm64 machine every boot uses: QEMU `virt` with EL2 (virtualization),
/// GICv3 and an SMMUv3, a VHE-capable CPU, one core, 1 GiB of RAM. With a
/// boot-module bundle: 2 GiB of RAM, the bundle placed by QEMU's generic
/// loader at [`bundle::ADDRESS`] and named by `modules=` on the command
/// line (see `bundle` for why there).
pub fn machine_command(
    qemu: &setup::Qemu,
    kernel: &Path,
    bootargs: &str,
    modules: Option<&bundle::Bundle>,
) -> Command {
    machine_command_on(qemu, "max", kernel, bootargs, modules)
}

/// As [`machine_command`], with CPU model `cpu` (`max`, or a real core
/// with VHE such as `cortex-a76` or `neoverse-n1`).
pub fn machine_command_on(
    qemu: &setup::Qemu,
    cpu: &str,
    kernel: &Path,
    bootargs: &str,
    modules: Option<&bundle::Bundle>,
) -> Command {
    let memory = if modules.is_some() {
        bundle::MEMORY
    } else {
        "1G"
    };
    let mut c = Command::new(&qemu.path);
    c.args([
        "-machine",
        "virt,virtualization=on,gic-version=3,iommu=smmuv3",
    ])
    .args(["-cpu", cpu, "-smp", "1", "-m", memory])
    .args(["-nographic", "-no-reboot"])
    // Lets the kernel report a test's pass/fail as QEMU's exit status.
    .args(["-semihosting-config", "enable=on,target=native"])
    .arg("-kernel")
    .arg(kernel);
    // Words after ` -- ` are a guest's command line: the kernel's own go
    // before them.
    let (own, guest) = match bootargs.split_once(" -- ") {
        Some((own, guest)) => (own, Some(guest)),
        None => (bootargs, None),
    };
    let mut append = format!("exit=semihosting {own}");
    if let Some(b) = modules {
        // `force-raw`: the file is bytes to copy, never an image to parse.
        c.arg("-device").arg(format!(
            "loader,file={},addr={:#x},force-raw=on",
            b.path.display(),
            bundle::ADDRESS
        ));
        append.push_str(&format!(" modules={:#x}", bundle::ADDRESS));
    }
    if let Some(guest) = guest {
        append.push_str(&format!(" -- {guest}"));
    }
    c.arg("-append").arg(
        append
            .split_ascii_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    );
    c
}

/// A console event from a running QEMU.
pub enum ConsoleEvent {
    /// A complete line (without the line ending).
    Line(String),
    /// QEMU has exited with this status.
    Exited(ExitStatus),
}

/// A running QEMU whose console is read line by line.
pub struct Session {
    child: Child,
    events: Receiver<ConsoleEvent>,
    input: Option<ChildStdin>,
}

impl Session {
    /// Starts `command`. With `echo`, console output is copied to this
    /// terminal as it arrives and stdin is passed through.
    pub fn start(command: Command, echo: bool) -> Result<Session, String> {
        let stdin = if echo {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Session::spawn(command, echo, stdin)
    }

    /// Starts `command` with its console input fed by [`Session::send`]
    /// (a script typing at the guest's serial console).
    pub fn start_scripted(command: Command) -> Result<Session, String> {
        Session::spawn(command, false, Stdio::piped())
    }

    /// Types `text` at the console (only for [`Session::start_scripted`]).
    pub fn send(&mut self, text: &str) -> Result<(), String> {
        let input = self
            .input
            .as_mut()
            .ok_or("this QEMU session has no scripted input")?;
        input
            .write_all(text.as_bytes())
            .and_then(|()| input.flush())
            .map_err(|e| format!("cannot write to QEMU's console: {e}"))
    }

    fn spawn(mut command: Command, echo: bool, stdin: Stdio) -> Result<Session, String> {
        command.stdout(Stdio::piped()).stderr(if echo {
            Stdio::inherit()
        } else {
            Stdio::piped()
        });
        command.stdin(stdin);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
        let input = child.stdin.take();
        let (tx, events) = mpsc::channel();
        let streams: Vec<Box<dyn Read + Send>> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for mut stream in streams {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut line = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if echo {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                    for &b in &buf[..n] {
                        match b {
                            b'\n' => {
                                let text = String::from_utf8_lossy(&line)
                                    .trim_end_matches('\r')
                                    .to_string();
                                if tx.send(ConsoleEvent::Line(text)).is_err() {
                                    return;
                                }
                                line.clear();
                            }
                            _ => line.push(b),
                        }
                    }
                }
                if !line.is_empty() {
                    let _ = tx.send(ConsoleEvent::Line(
                        String::from_utf8_lossy(&line).into_owned(),
                    ));
                }
            });
        }
        Ok(Session {
            child,
            events,
            input,
        })
    }

    /// The next console event, or `None` if `deadline` passes first.
    pub fn next_event(&mut self, deadline: Instant) -> Option<ConsoleEvent> {
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            match self.events.recv_timeout(wait) {
                Ok(event) => return Some(event),
                Err(RecvTimeoutError::Disconnected) | Err(RecvTimeoutError::Timeout) => {
                    // All output read (or a pause): has QEMU exited?
                    if let Ok(Some(status)) = self.child.try_wait() {
                        // Drain lines that raced with the exit.
                        if let Ok(event) = self.events.recv_timeout(Duration::from_millis(50)) {
                            return Some(event);
                        }
                        return Some(ConsoleEvent::Exited(status));
                    }
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
            }
        }
    }

    /// Stops QEMU (SIGTERM, so it restores the terminal; SIGKILL after 2 s).
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `cargo xtask run`.
/// The kernel command line that has the root task run a Linux guest
/// (`skyscope_launcher::config`): its vCPUs and RAM, the host's time as
/// the guest's wall clock (there is no RTC the system could read), and
/// the guest's own command line after ` -- `.
fn guest_bootargs(args: &RunArgs) -> Result<String, String> {
    let mut words = vec!["guest=linux".to_string()];
    if let Some(n) = args.vcpus {
        words.push(format!("vcpus={n}"));
    }
    if let Some(size) = &args.guest_mem {
        words.push(format!("guest-mem={size}"));
    }
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("the host clock is before 1970: {e}"))?;
    words.push(format!("epoch={}", epoch.as_secs()));
    let guest = if args.append.trim().is_empty() {
        "console=ttyAMA0"
    } else {
        args.append.trim()
    };
    Ok(format!("{} -- {guest}", words.join(" ")))
}

pub fn run(args: &RunArgs) -> Result<ExitCode, String> {
    let expect = args
        .expect
        .as_deref()
        .map(|re| {
            Regex::new(re).map_err(|e| format!("--expect is not a valid regular expression: {e}"))
        })
        .transpose()?;
    toolchain::ensure()?;
    let qemu = setup::ensure_qemu()?;
    let images = build::build_images()?;
    let mut modules: Vec<(String, std::path::PathBuf)> = Vec::new();
    // The main job: the Linux payload under a VMM process, unless the
    // user asked for no guest or another kernel.
    let payload_guest = !args.native && args.kernel.is_none();
    if payload_guest {
        let guest = payload::ensure(false)?;
        modules.push(("linux".into(), guest.image));
        modules.push(("initrd".into(), guest.initramfs));
    }
    if let Some(kernel) = &args.kernel {
        modules.push(("linux".into(), kernel.clone()));
        if let Some(initrd) = &args.initrd {
            modules.push(("initrd".into(), initrd.clone()));
        }
    }
    let bootargs = if !args.native {
        guest_bootargs(args)?
    } else {
        args.append.clone()
    };
    for m in &args.module {
        let (name, path) = m
            .split_once('=')
            .ok_or_else(|| format!("--module {m}: expected NAME=PATH"))?;
        modules.push((name.into(), path.into()));
    }
    let bundle = if modules.is_empty() {
        None
    } else {
        println!("==> bundling {} boot module(s)", modules.len());
        Some(bundle::for_run(&modules)?)
    };
    let mut command = machine_command(&qemu, &images.kernel, &bootargs, bundle.as_ref());
    if args.gdb {
        command.args(["-s", "-S"]);
        println!("==> QEMU gdbstub on tcp::1234, CPU paused. In another terminal:");
        println!(
            "    gdb-multiarch {} -ex 'target remote :1234'",
            images.kernel.display()
        );
    }
    println!(
        "==> booting QEMU {} (virt, EL2, GICv3, -cpu max, {}); Ctrl-A X quits",
        qemu.version,
        if bundle.is_some() {
            "2 GiB, boot modules at 0x80000000"
        } else {
            "1 GiB"
        }
    );
    let mut session = Session::start(command, true)?;
    // Without --timeout, run until QEMU exits (a year is "forever" here).
    let deadline = Instant::now() + Duration::from_secs(args.timeout.unwrap_or(365 * 24 * 3600));
    loop {
        match session.next_event(deadline) {
            Some(ConsoleEvent::Line(line)) => {
                if expect.as_ref().is_some_and(|re| re.is_match(&line)) {
                    session.stop();
                    println!("\n==> matched --expect; stopped QEMU");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Some(ConsoleEvent::Exited(status)) => {
                if expect.is_some() {
                    return Err(format!(
                        "QEMU exited ({status}) before the console matched --expect"
                    ));
                }
                return Ok(if status.success() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            None => {
                session.stop();
                return Err(format!("timed out after {} s", args.timeout.unwrap_or(0)));
            }
        }
    }
}
