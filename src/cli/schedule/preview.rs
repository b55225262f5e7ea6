//! `agentcron schedules preview`: prints each user's next fire times (the data comes from
//! `crate::schedule::preview`).

use std::process::ExitCode;

use anyhow::Context as _;

use super::{PREVIEW_USERS, PreviewArgs};
use crate::cli::exit;
use crate::config::ScheduleConfig;
use crate::ids::UserId;
use crate::queue::Queue;
use crate::schedule;

pub(super) async fn run(
    queue: &Queue,
    schedules: &[ScheduleConfig],
    args: &PreviewArgs,
) -> anyhow::Result<ExitCode> {
    let Some(schedule) = schedules.iter().find(|s| s.name == args.name) else {
        let names: Vec<&str> = schedules.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "agentcron schedules preview: no schedule {:?}; the configuration has: {}",
            args.name,
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        );
        return Ok(ExitCode::from(exit::FAILURE));
    };
    let from = match args.from.as_deref() {
        None => chrono::Utc::now(),
        Some(text) => match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(time) => time.with_timezone(&chrono::Utc),
            Err(error) => {
                eprintln!(
                    "agentcron schedules preview: --from {text:?} is not an RFC 3339 time such as 2027-03-13T00:00:00Z: {error}"
                );
                return Ok(ExitCode::from(exit::USAGE));
            }
        },
    };
    let users: Vec<UserId> = if args.users.is_empty() {
        let names =
            schedule::users(queue, schedule).await.context("reading the schedule's users")?;
        names.iter().filter_map(|name| UserId::parse(name).ok()).take(PREVIEW_USERS).collect()
    } else {
        let parsed: Result<Vec<UserId>, _> = args.users.iter().map(UserId::parse).collect();
        match parsed {
            Ok(users) => users,
            Err(error) => {
                eprintln!("agentcron schedules preview: --user: {error}");
                return Ok(ExitCode::from(exit::USAGE));
            }
        }
    };
    let (fires, problems) =
        schedule::preview(queue, schedule, &users, from, usize::from(args.count))
            .await
            .context("reading the users' profiles")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&fires)?);
    } else {
        let mut last_user = "";
        for fire in &fires {
            if fire.user != last_user {
                println!("{}  ({})", fire.user, fire.timezone);
                last_user = &fire.user;
            }
            let paused = if fire.paused { "  paused" } else { "" };
            println!("  {}  ({}){paused}", fire.local, fire.utc);
        }
    }
    for problem in &problems {
        eprintln!("agentcron schedules preview: {} is left out: {}", problem.user, problem.problem);
    }
    Ok(ExitCode::from(exit::OK))
}
