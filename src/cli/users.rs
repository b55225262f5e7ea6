//! `agentcron users set|show|list`: user profiles (time zone, pause, template values). The
//! profile's rules live in `crate::users`; this file parses flags and prints.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::exit;
use super::report::{connect, print_json};
use crate::config::RedisConn;
use crate::ids::UserId;
use crate::keys::Keys;
use crate::telemetry::Redactor;
use crate::users::{self, Change, Pause, Profile};

/// Most users `users list` prints without `--schedule`.
const LIST_LIMIT: usize = 10_000;

/// `agentcron users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Change users' profiles: time zone, pause, template values.
    #[command(after_help = "\
Examples:
  agentcron users set alice@example.com --tz Europe/Berlin --var name=Alice --var language=German
  agentcron users set bob@example.com --pause 2027-01-04T00:00:00Z    paused until then
  agentcron users set bob@example.com --pause                          paused until --resume
  agentcron users set bob@example.com --resume

The same with redis-cli:
  redis-cli HSET agentcron:profile:alice@example.com timezone Europe/Berlin name Alice
  redis-cli HSET agentcron:profile:bob@example.com paused_until forever
  redis-cli HDEL agentcron:profile:bob@example.com paused_until")]
    Set(SetArgs),
    /// Show users' profiles, with any value that cannot be used and why.
    #[command(after_help = "Example:\n  agentcron users show alice@example.com --json")]
    Show(ShowArgs),
    /// List the users with a profile, or the users of one schedule.
    #[command(after_help = "Example:\n  agentcron users list --schedule morning-triage --json")]
    List(ListArgs),
}

/// Arguments of `users set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The users to change (each gets the same change).
    #[arg(required = true, value_name = "USER")]
    pub users: Vec<String>,
    /// The user's IANA time zone, for schedules with `timezone = "user"`.
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// Pause the user's scheduled runs: until an RFC 3339 time, a date (midnight UTC), a
    /// duration from now (`3d`, `12h`), or without a value until `--resume`.
    #[arg(long, value_name = "UNTIL", num_args = 0..=1, default_missing_value = "forever", conflicts_with = "resume")]
    pub pause: Option<String>,
    /// End a pause.
    #[arg(long)]
    pub resume: bool,
    /// A value for prompt templates (`{KEY}`); repeatable.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Remove a template value; repeatable.
    #[arg(long, value_name = "KEY")]
    pub unset: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `users show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The users to show.
    #[arg(required = true, value_name = "USER")]
    pub users: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `users list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The users of this schedule (inline and its Redis set), with or without a profile.
    #[arg(long, value_name = "NAME")]
    pub schedule: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One user's profile, as printed.
#[derive(Debug, Serialize)]
struct Shown {
    user: String,
    #[serde(flatten)]
    profile: Profile,
}

/// Runs a `users` subcommand.
pub(super) async fn run(
    flag: Option<&Path>,
    command: &UsersCommand,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::Set(args) => {
            let (users, change) = match parse_set(args) {
                Ok(parsed) => parsed,
                Err(message) => {
                    eprintln!("agentcron users set: {message}");
                    return Ok(ExitCode::from(exit::USAGE));
                }
            };
            let (_, mut conn, keys) = connect(flag, redactor).await?;
            change.apply(&mut conn, &keys, &users).await.context("writing the profiles")?;
            show(&mut conn, &keys, &users, args.json, redactor).await
        }
        UsersCommand::Show(args) => {
            let users = match parse_users(&args.users) {
                Ok(users) => users,
                Err(message) => {
                    eprintln!("agentcron users show: {message}");
                    return Ok(ExitCode::from(exit::USAGE));
                }
            };
            let (_, mut conn, keys) = connect(flag, redactor).await?;
            show(&mut conn, &keys, &users, args.json, redactor).await
        }
        UsersCommand::List(args) => list(flag, args, redactor).await,
    }
}

fn parse_users(names: &[String]) -> Result<Vec<UserId>, String> {
    names
        .iter()
        .map(|name| {
            UserId::parse(name).map_err(|e| format!("{name:?} is not a valid user id: {e}"))
        })
        .collect()
}

/// The users and the change, every value checked before anything is written.
fn parse_set(args: &SetArgs) -> Result<(Vec<UserId>, Change), String> {
    let users = parse_users(&args.users)?;
    let timezone = args
        .tz
        .as_deref()
        .map(|zone| users::parse_zone(zone).map_err(|e| format!("--tz: {e}")))
        .transpose()?;
    let pause = match (&args.pause, args.resume) {
        (Some(until), _) => Some(Some(parse_until(until)?)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let change = Change { timezone, pause, ..Change::default() }
        .with_values(&args.vars)
        .and_then(|change| change.with_unset(&args.unset))
        .map_err(|e| e.to_string())?;
    if change.is_empty() {
        return Err("nothing to change: give --tz, --pause, --resume, --var or --unset".to_owned());
    }
    Ok((users, change))
}

/// `--pause UNTIL`: `forever`, an RFC 3339 time, a date (midnight UTC) or a duration from now.
fn parse_until(text: &str) -> Result<Pause, String> {
    if let Ok(pause) = users::parse_pause(text) {
        return Ok(pause);
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Pause::Until(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()));
    }
    let duration = humantime::parse_duration(text).map_err(|_| {
        format!("--pause {text:?}: expected an RFC 3339 time, a date (2027-01-04), a duration (3d) or nothing (until --resume)")
    })?;
    let duration =
        chrono::Duration::from_std(duration).map_err(|e| format!("--pause {text:?}: {e}"))?;
    Ok(Pause::Until(chrono::Utc::now() + duration))
}

/// The profiles of `users`, read 1,000 per pipeline (a schedule may have 100,000 users).
async fn read_shown(
    conn: &mut RedisConn,
    keys: &Keys,
    users: &[UserId],
) -> anyhow::Result<Vec<Shown>> {
    let refs: Vec<&UserId> = users.iter().collect();
    let mut profiles = Vec::with_capacity(users.len());
    for chunk in refs.chunks(1_000) {
        profiles.extend(users::read(conn, keys, chunk).await.context("reading the profiles")?);
    }
    let named = users.iter().map(|user| user.as_str().to_owned());
    Ok(named.zip(profiles).map(|(user, profile)| Shown { user, profile }).collect())
}

async fn show(
    conn: &mut RedisConn,
    keys: &Keys,
    users: &[UserId],
    json: bool,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let shown = read_shown(conn, keys, users).await?;
    if json {
        print_json(&shown, redactor)?;
        return Ok(ExitCode::from(exit::OK));
    }
    for (i, entry) in shown.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_profile(entry);
    }
    Ok(ExitCode::from(exit::OK))
}

fn print_profile(entry: &Shown) {
    let profile = &entry.profile;
    println!("{}", entry.user);
    let zone = profile.timezone.map_or("(not set)".to_owned(), |zone| zone.name().to_owned());
    println!("  timezone      {zone}");
    let paused = profile.paused.map_or("no".to_owned(), |pause| format!("until {pause}"));
    println!("  paused        {paused}");
    for (key, value) in &profile.values {
        println!("  {key:<13} {value}");
    }
    for problem in &profile.problems {
        println!("  ! {}: {} (not used)", problem.field, problem.reason);
    }
}

async fn list(
    flag: Option<&Path>,
    args: &ListArgs,
    redactor: &Redactor,
) -> anyhow::Result<ExitCode> {
    let (config, mut conn, keys) = connect(flag, redactor).await?;
    let users: Vec<UserId> = match &args.schedule {
        None => {
            users::with_profiles(&mut conn, &keys, LIST_LIMIT).await.context("listing profiles")?
        }
        Some(name) => {
            let Some(schedule) = config.schedules.iter().find(|s| &s.name == name) else {
                eprintln!("agentcron users list: no schedule {name:?} in the configuration");
                return Ok(ExitCode::from(exit::FAILURE));
            };
            let queue = super::setup::queue(&config).await?;
            let names = crate::schedule::users(&queue, schedule)
                .await
                .context("reading the schedule's users")?;
            names.iter().filter_map(|name| UserId::parse(name).ok()).collect()
        }
    };
    let shown = read_shown(&mut conn, &keys, &users).await?;
    if args.json {
        print_json(&shown, redactor)?;
        return Ok(ExitCode::from(exit::OK));
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|entry| {
            let profile = &entry.profile;
            vec![
                entry.user.clone(),
                profile.timezone.map_or("-".to_owned(), |zone| zone.name().to_owned()),
                profile.paused.map_or("-".to_owned(), |pause| pause.to_string()),
                profile.values.keys().cloned().collect::<Vec<_>>().join(","),
                profile.problems.iter().map(|p| p.field.clone()).collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    let style = super::report::Style::detect();
    super::report::table(
        &mut std::io::stdout(),
        &style,
        &["USER", "TIMEZONE", "PAUSED", "VALUES", "PROBLEMS"],
        &rows,
    )?;
    Ok(ExitCode::from(exit::OK))
}
