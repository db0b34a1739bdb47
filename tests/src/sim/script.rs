//! The commands a simulated worker can "run": a tiny subset of what the test image's
//! busybox does, so that one spec means the same on a simulated worker as on a real one.
//!
//! A scheduling test needs outcomes (success, a failing exit code, a job that runs for a
//! while, one that outlives its timeout, a line of output), not containers. Rather than a
//! second, simulator-only way to ask for them, the simulated worker reads the request's
//! own `spec.command`, and understands exactly this much of it:
//!
//! | command | does |
//! |---|---|
//! | (empty: the image's default, `sh` without input) | exits 0 |
//! | `true`, `false` | exits 0, 1 |
//! | `sleep S...` | waits S seconds (decimals and an `s`, `m`, `h`, `d` suffix; several add up), exits 0 |
//! | `echo [-n] WORDS...` | writes the words, space-separated, and a newline unless `-n`, to stdout |
//! | `sh -c 'SCRIPT'` | runs SCRIPT: the commands above and `exit [N]`, separated by `;` or newlines, words quoted with `'...'` or `"..."` |
//!
//! Like `sh`, a script's status is that of the last command it ran, and `exit N` ends it
//! with N modulo 256. Anything else (pipes, redirections, variables, other programs) is
//! [`Unsupported`]: the simulated worker reports the attempt as failed to start with a
//! message naming what it could not do, rather than pretending to have run it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// One command of a script.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `true`: status 0.
    True,
    /// `false`: status 1.
    False,
    /// `exit [N]`: ends the script with N (mod 256), or with the last command's status.
    Exit(Option<i32>),
    /// `sleep`: waits this long, then status 0.
    Sleep(Duration),
    /// `echo`: these bytes to stdout, then status 0.
    Echo(String),
}

/// What a simulated worker runs for a command line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Script {
    /// The commands, in order.
    pub commands: Vec<Command>,
}

/// A command line the simulated worker cannot run, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The command line as it was given.
    pub command: Vec<String>,
    /// What in it is not understood.
    pub why: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the simulated worker cannot run {:?}: {}; it understands true, false, sleep, \
             echo and `sh -c` scripts of those and exit",
            self.command, self.why
        )
    }
}

impl std::error::Error for Unsupported {}

/// Why a script did not run to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// It ran past its timeout.
    TimedOut,
    /// The server cancelled it.
    Cancelled,
    /// The worker is shutting down and stopped it.
    Interrupted,
    /// The attempt is no longer this worker's: stop, report nothing.
    Abandoned,
}

/// How a script ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It ran to its end (or to an `exit`) with this status.
    Exited(i32),
    /// It was stopped.
    Stopped(Stop),
}

/// What a script needs from whoever runs it: time to pass, and somewhere to write.
pub(crate) trait Shell {
    /// Waits `duration`, unless the attempt is stopped first.
    fn sleep(&mut self, duration: Duration) -> impl Future<Output = Result<(), Stop>> + Send;
    /// Writes `text` to stdout.
    fn echo(&mut self, text: &str) -> impl Future<Output = Result<(), Stop>> + Send;
}

impl Script {
    /// Reads `command` (a spec's `command`, as the container would get it).
    pub fn parse(command: &[String]) -> Result<Script, Unsupported> {
        let unsupported = |why: String| Unsupported {
            command: command.to_vec(),
            why,
        };
        match command {
            [] => Ok(Script::default()),
            [sh, flag, script, ..] if sh == "sh" && flag == "-c" => {
                let mut commands = Vec::new();
                for words in shell_commands(script).map_err(unsupported)? {
                    commands.push(simple(&words, true).map_err(unsupported)?);
                }
                Ok(Script { commands })
            }
            words => Ok(Script {
                commands: vec![simple(words, false).map_err(unsupported)?],
            }),
        }
    }

    /// Runs the commands in order on `shell`, as `sh` would.
    pub(crate) async fn run(&self, shell: &mut impl Shell) -> Ended {
        let mut status = 0;
        for command in &self.commands {
            let done = match command {
                Command::True => Ok(0),
                Command::False => Ok(1),
                Command::Exit(code) => return Ended::Exited(code.unwrap_or(status)),
                Command::Sleep(duration) => shell.sleep(*duration).await.map(|()| 0),
                Command::Echo(text) => shell.echo(text).await.map(|()| 0),
            };
            match done {
                Ok(code) => status = code,
                Err(stop) => return Ended::Stopped(stop),
            }
        }
        Ended::Exited(status)
    }
}

/// Splits a `sh -c` script into its simple commands' words.
fn shell_commands(script: &str) -> Result<Vec<Vec<String>>, String> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = script.chars();
    while let Some(c) = chars.next() {
        match c {
            ';' | '\n' => {
                words.extend(word.take());
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let text = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => text.push(c),
                        None => return Err("a quote ' is not closed".into()),
                    }
                }
            }
            '"' => {
                let text = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c @ ('$' | '`' | '\\')) => {
                            return Err(format!("{c:?} inside double quotes"));
                        }
                        Some(c) => text.push(c),
                        None => return Err("a quote \" is not closed".into()),
                    }
                }
            }
            '|' | '&' | '<' | '>' | '$' | '`' | '\\' | '(' | ')' | '{' | '}' | '*' | '?' | '['
            | '#' | '~' => {
                return Err(format!(
                    "{c:?} (only plain words, quotes and ; are understood)"
                ));
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if !words.is_empty() {
        commands.push(words);
    }
    Ok(commands)
}

/// One simple command; `exit` only exists inside a shell script.
fn simple(words: &[String], in_shell: bool) -> Result<Command, String> {
    let Some((name, args)) = words.split_first() else {
        return Ok(Command::True);
    };
    match name.as_str() {
        "true" => Ok(Command::True),
        "false" => Ok(Command::False),
        "exit" if in_shell => match args {
            [] => Ok(Command::Exit(None)),
            // As busybox: a number from 0 up, taken modulo 256; anything else is illegal.
            [code] => code
                .parse::<u64>()
                .map(|code| Command::Exit(Some(i32::try_from(code % 256).unwrap_or(0))))
                .map_err(|_| format!("exit {code:?} is not a number from 0 up")),
            _ => Err("exit takes one number".into()),
        },
        "sleep" => {
            if args.is_empty() {
                return Err("sleep needs a duration".into());
            }
            let mut total = Duration::ZERO;
            for arg in args {
                total += sleep_duration(arg)?;
            }
            Ok(Command::Sleep(total))
        }
        "echo" => {
            let (newline, words) = match args.split_first() {
                Some((flag, rest)) if flag == "-n" => (false, rest),
                Some((flag, _)) if flag.starts_with('-') && flag.len() > 1 => {
                    return Err(format!("echo {flag} is not understood"));
                }
                _ => (true, args),
            };
            let mut text = words.join(" ");
            if newline {
                text.push('\n');
            }
            Ok(Command::Echo(text))
        }
        other => Err(format!(
            "`{other}` is not one of true, false, sleep, echo{}",
            if in_shell { ", exit" } else { "" }
        )),
    }
}

/// A `sleep` argument as busybox reads it: a decimal number with an optional unit.
fn sleep_duration(arg: &str) -> Result<Duration, String> {
    let (number, unit) = match arg.char_indices().last() {
        Some((at, 's')) => (&arg[..at], 1.0),
        Some((at, 'm')) => (&arg[..at], 60.0),
        Some((at, 'h')) => (&arg[..at], 3600.0),
        Some((at, 'd')) => (&arg[..at], 86_400.0),
        _ => (arg, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .and_then(|n| Duration::try_from_secs_f64(n * unit).ok())
        .ok_or_else(|| format!("sleep {arg:?} is not a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(command: &[&str]) -> Result<Script, Unsupported> {
        let command: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
        Script::parse(&command)
    }

    fn commands(command: &[&str]) -> Vec<Command> {
        parse(command)
            .unwrap_or_else(|e| panic!("{command:?} should parse: {e}"))
            .commands
    }

    fn refused(command: &[&str]) -> String {
        match parse(command) {
            Ok(script) => panic!("{command:?} should be refused, parsed as {script:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Records what a script did; a sleep of exactly `stop_at` is stopped with `stop`.
    #[derive(Default)]
    struct Recorder {
        slept: Vec<Duration>,
        stdout: String,
        stop_at: Option<(Duration, Stop)>,
    }

    impl Shell for Recorder {
        async fn sleep(&mut self, duration: Duration) -> Result<(), Stop> {
            self.slept.push(duration);
            match self.stop_at {
                Some((at, stop)) if at == duration => Err(stop),
                _ => Ok(()),
            }
        }

        async fn echo(&mut self, text: &str) -> Result<(), Stop> {
            self.stdout.push_str(text);
            Ok(())
        }
    }

    async fn run(command: &[&str]) -> (Ended, Recorder) {
        let mut shell = Recorder::default();
        let ended = parse(command).expect("parses").run(&mut shell).await;
        (ended, shell)
    }

    #[tokio::test]
    async fn true_and_an_empty_command_exit_zero_and_false_exits_one() {
        assert_eq!(run(&[]).await.0, Ended::Exited(0));
        assert_eq!(run(&["true"]).await.0, Ended::Exited(0));
        assert_eq!(run(&["false"]).await.0, Ended::Exited(1));
        assert_eq!(run(&["sh", "-c", ""]).await.0, Ended::Exited(0));
    }

    #[tokio::test]
    async fn exit_in_a_script_ends_it_with_its_code_modulo_256() {
        assert_eq!(run(&["sh", "-c", "exit 3"]).await.0, Ended::Exited(3));
        assert_eq!(run(&["sh", "-c", "exit 0"]).await.0, Ended::Exited(0));
        assert_eq!(run(&["sh", "-c", "exit 256"]).await.0, Ended::Exited(0));
        assert_eq!(run(&["sh", "-c", "exit 300"]).await.0, Ended::Exited(44));
        let (ended, shell) = run(&["sh", "-c", "exit 7; echo never"]).await;
        assert_eq!(ended, Ended::Exited(7));
        assert_eq!(shell.stdout, "", "nothing runs after exit");
        // A bare exit keeps the last command's status.
        assert_eq!(run(&["sh", "-c", "false; exit"]).await.0, Ended::Exited(1));
    }

    #[tokio::test]
    async fn a_script_has_the_status_of_its_last_command() {
        assert_eq!(run(&["sh", "-c", "false; true"]).await.0, Ended::Exited(0));
        assert_eq!(run(&["sh", "-c", "true\nfalse"]).await.0, Ended::Exited(1));
        assert_eq!(
            run(&["sh", "-c", "false; echo x"]).await.0,
            Ended::Exited(0)
        );
    }

    #[tokio::test]
    async fn sleep_takes_decimals_units_and_several_arguments() {
        assert_eq!(
            commands(&["sleep", "2"]),
            [Command::Sleep(Duration::from_secs(2))]
        );
        assert_eq!(
            commands(&["sleep", "0.25"]),
            [Command::Sleep(Duration::from_millis(250))]
        );
        assert_eq!(
            commands(&["sleep", "1m", "1.5s"]),
            [Command::Sleep(Duration::from_millis(61_500))]
        );
        assert_eq!(
            commands(&["sleep", "2h"]),
            [Command::Sleep(Duration::from_secs(7200))]
        );
        assert_eq!(
            commands(&["sleep", "1d"]),
            [Command::Sleep(Duration::from_secs(86_400))]
        );
        let (ended, shell) = run(&["sh", "-c", "sleep 1; sleep 2; exit 5"]).await;
        assert_eq!(ended, Ended::Exited(5));
        assert_eq!(
            shell.slept,
            [Duration::from_secs(1), Duration::from_secs(2)]
        );
    }

    #[tokio::test]
    async fn a_stopped_sleep_ends_the_script_without_running_the_rest() {
        let mut shell = Recorder {
            stop_at: Some((Duration::from_secs(60), Stop::Cancelled)),
            ..Recorder::default()
        };
        let script = parse(&["sh", "-c", "echo first; sleep 60; echo second"]).expect("parses");
        assert_eq!(
            script.run(&mut shell).await,
            Ended::Stopped(Stop::Cancelled)
        );
        assert_eq!(shell.stdout, "first\n");
    }

    #[tokio::test]
    async fn echo_writes_its_words_with_a_newline_unless_told_not_to() {
        let (ended, shell) = run(&["echo", "hello", "world"]).await;
        assert_eq!(ended, Ended::Exited(0));
        assert_eq!(shell.stdout, "hello world\n");
        assert_eq!(run(&["echo"]).await.1.stdout, "\n");
        assert_eq!(run(&["echo", "-n", "a", "b"]).await.1.stdout, "a b");
        let (_, shell) = run(&["sh", "-c", "echo 'two  spaces'; echo \"x;y\"  z;echo"]).await;
        assert_eq!(shell.stdout, "two  spaces\nx;y z\n\n");
    }

    #[test]
    fn what_busybox_would_do_differently_is_refused_and_named() {
        for (command, named) in [
            (&["sh", "-c", "echo a | wc -l"][..], "'|'"),
            (&["sh", "-c", "echo $HOME"], "'$'"),
            (&["sh", "-c", "echo \"$HOME\""], "'$' inside double quotes"),
            (&["sh", "-c", "echo hi > /tmp/x"], "'>'"),
            (&["sh", "-c", "sleep 1 && true"], "'&'"),
            (&["sh", "-c", "echo 'open"], "not closed"),
            (&["sh", "-c", "seq 1 3"], "`seq`"),
            (&["exit", "3"], "`exit`"),
            (&["sh", "-c", "exit three"], "not a number"),
            (&["sh", "-c", "exit -1"], "not a number"),
            (&["sleep"], "needs a duration"),
            (&["sleep", "soon"], "\"soon\" is not a duration"),
            (&["sleep", "-1"], "not a duration"),
            (&["echo", "-e", "a\\tb"], "echo -e"),
            (&["tail", "/dev/zero"], "`tail`"),
        ] {
            let message = refused(command);
            assert!(
                message.contains(named),
                "{command:?}: the refusal should name {named}: {message}"
            );
            assert!(
                message.contains("simulated worker"),
                "{command:?}: the refusal should say who refuses: {message}"
            );
        }
    }
}
