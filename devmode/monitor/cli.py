"""``python -m devmode score | trends | alerts | watchlist | sources | watch``: what the models
say about the text over time, the rules that raise alerts on it, and the feeds, folders and
watcher that keep it current.

    $ python -m devmode score headlines
    $ python -m devmode trends headlines --period week
    $ python -m devmode alerts add headlines --threshold 0.4
"""

from __future__ import annotations

import click

from devmode import clitools, jobs
from devmode.clitools import echo_json, group, json_option, setting_options
from devmode.data import sources
from devmode.models import registry
from devmode.monitor import alerts, backtest, delivery, score_jobs, trends, watcher, watchlist


@click.command("score")
@click.argument("dataset")
@click.option(
    "--task",
    "tasks",
    type=click.Choice(registry.TASKS),
    multiple=True,
    help="Score with this task's active model only (repeatable). Default: topic, when a topic "
    "model is active, then sentiment.",
)
@click.option(
    "--background", is_flag=True, help="Start a worker process and return; the page shows it."
)
@click.option("--cancel", is_flag=True, help="Stop the dataset's running scoring job.")
@click.pass_context
def score_command(ctx, dataset, tasks, background, cancel):
    """Score DATASET's rows with the active models; rows a model already scored are skipped.

    A stopped or killed job keeps every whole chunk it wrote: run the command again to go on.
    """
    db_path = clitools.db_path(ctx)
    with clitools.db(ctx) as db:
        if cancel:
            job = score_jobs.active_job(db, dataset)
            if job is None:
                raise click.ClickException(f"No scoring job is running on {dataset}.")
            score_jobs.request_cancel(db, job.id)
            click.echo(f"Asked scoring job {job.id} to stop after its current chunk.")
            return
        job = score_jobs.create_job(db, dataset, list(tasks) or None)
    if background:
        pid = score_jobs.start_job(db_path, job.id)
        click.echo(f"Scoring job {job.id} started (process {pid}).")
        return
    job = score_jobs.execute_job(db_path, job.id, echo=click.echo)
    for line in score_jobs.describe_job(job, per_task=False):
        click.echo(line)
    if job.status != jobs.COMPLETED:
        raise click.ClickException(f"Scoring job {job.id} ended {job.status}.")


@click.command("trends")
@click.argument("dataset")
@setting_options(alerts.RuleSettings, only=("period", "ticker", "topic", "stories"))
@click.option(
    "--by",
    "column",
    help="Split by this column: ticker, topic, or any of the dataset's (e.g. source). "
    f"Shows the {trends.MAX_SPLIT_VALUES} values with the most texts.",
)
@json_option()
@click.pass_context
def trends_command(ctx, dataset, period, ticker, topic, stories, column, as_json):
    """Print the sentiment index (P(positive) - P(negative)), share negative and volume per period."""
    with clitools.db(ctx) as db:
        if column:
            points = trends.trend_by(db, dataset, column, period=period)
        else:
            points = trends.sentiment_trend(
                db, dataset, period=period, ticker=ticker, topic=topic, stories=stories
            )
        reason = "" if points else trends.why_no_trend(db, dataset, ticker=ticker, topic=topic)
    if as_json:
        echo_json(points)
        return
    if not points:
        click.echo(f"{reason} Score new rows with: python -m devmode score {dataset}")
        return
    first = f"{column:<24} " if column else ""
    click.echo(f"{first}{period:<12} {'sentiment':>10} {'negative':>9} {'volume':>7}")
    for p in points:
        value = f"{str(p['value'])[:24]:<24} " if column else ""
        click.echo(
            f"{value}{p['period']:<12} {p['sentiment']:>+10.3f} {p['share_negative']:>8.0%} "
            f"{p['volume']:>7,}"
        )


@group("alerts")
def alerts_group():
    """Rules that flag surges of negative sentiment, and the alerts they raised."""


@alerts_group.command("add")
@click.argument("dataset")
@setting_options(alerts.RuleSettings, required=("threshold",))
@click.pass_context
def alerts_add(ctx, dataset, **settings):
    """Add a rule to DATASET and check it against what is scored so far."""
    rule_settings = alerts.RuleSettings(**settings)
    with clitools.db(ctx) as db:
        rule = alerts.add_alert_rule(db, dataset, rule_settings)
        raised = alerts.count_events(db, rule.id)
    click.echo(f"Rule {rule.id}: {rule.describe()}. {raised} alerts in the data scored so far.")


@alerts_group.command("backtest")
@click.argument("dataset", required=False)
@click.option("--rule", "rule_id", type=int, help="Backtest this saved rule (on its dataset).")
@setting_options(alerts.RuleSettings, only=backtest.RULE_OPTIONS)
@setting_options(backtest.PriceCheck)
@json_option()
@click.pass_context
def alerts_backtest(ctx, dataset, rule_id, prices, horizon, drop, as_json, **settings):
    """List the periods a rule would have fired on over DATASET's scored history (nothing is
    saved), with their top stories, the count per year and, with --prices, what prices did."""
    check = backtest.PriceCheck(prices=prices, horizon=horizon, drop=drop)
    typed = clitools.given_options(ctx, settings)
    if rule_id is not None and (dataset or typed):
        raise click.UsageError(
            "--rule backtests a saved rule on its own dataset with its own settings; found "
            + ", ".join([*(["DATASET"] if dataset else []), *(f"--{k}" for k in typed)])
            + " too. Drop them, or leave out --rule to backtest new settings."
        )
    if rule_id is None and not (dataset and "threshold" in typed):
        raise click.UsageError(
            "Expected DATASET and the rule's --threshold (and the other options of alerts "
            "add), or --rule RULE_ID for a saved rule."
        )
    with clitools.db(ctx) as db:
        if rule_id is not None:
            result = backtest.backtest_rule(db, rule_id, check)
        else:
            result = backtest.backtest(db, dataset, alerts.RuleSettings(**settings), check)
    if as_json:
        echo_json(result)
        return
    for line in backtest.summary_lines(result):
        click.echo(line)
    kind = result["rule"]["kind"]
    for fire in result["fires"]:
        ret = fire.get("forward_return")
        after = (
            f"  next: {ret:+.1%}"
            if ret is not None
            else ("  next: -" if "hit_rate" in result else "")
        )
        click.echo(
            f"  {fire['period']}  {fire['value']:>+8.2f}  {alerts.event_figure(fire, kind)}{after}"
        )
        for story in fire["stories"]:
            click.echo(f"      [{story['id']}] {story['text'][:100]} ({story['sentiment']:+.2f})")
    if "lead_lag" in result:
        click.echo("Lead/lag: the index of period t against the return of period t + lag")
        for row in result["lead_lag"]:
            corr = (
                f"{row['corr']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}]"
                if row["corr"] is not None
                else "-"
            )
            click.echo(f"  lag {row['lag']:+d}: {corr} ({row['n']} pairs)")


@alerts_group.command("list")
@click.argument("dataset")
@click.option("--all", "include_acknowledged", is_flag=True, help="Include acknowledged alerts.")
@click.pass_context
def alerts_list(ctx, dataset, include_acknowledged):
    """List DATASET's open alerts (newest period first)."""
    with clitools.db(ctx) as db:
        events = alerts.alert_events(db, dataset, include_acknowledged=include_acknowledged)
    if not events:
        click.echo("No open alerts.")
        return
    for e in events:
        done = " (acknowledged)" if e["acknowledged_at"] else ""
        click.echo(
            f"{e['id']:>4}  {e['period']} of {e['period_start']}: "
            f"{alerts.event_figure(e, e['kind'])}; rule: {e['rule']}{done}"
        )
        if e.get("brief_status"):
            click.echo(f"      brief {e['brief_status']}: {e['brief_note']}")


@alerts_group.command("ack")
@click.argument("alert_id", type=int)
@click.pass_context
def alerts_ack(ctx, alert_id):
    """Acknowledge an alert (it leaves the open list)."""
    with clitools.db(ctx) as db:
        alerts.acknowledge_alert(db, alert_id)
    click.echo(f"Acknowledged alert {alert_id}.")


@alerts_group.command("rules")
@click.argument("dataset")
@click.pass_context
def alerts_rules(ctx, dataset):
    """List DATASET's rules with their ids and where each one is delivered."""
    with clitools.db(ctx) as db:
        rules = alerts.list_alert_rules(db, dataset)
        channels = delivery.list_channels(db)
    if not rules:
        click.echo(f"No rules on {dataset}. Add one: python -m devmode alerts add {dataset} ...")
    for rule in rules:
        brief = f", with {rule.settings.describe_brief()}" if rule.settings.brief else ""
        click.echo(f"{rule.id:>4}  {rule.describe()}{brief}")
        for channel in (c for c in channels if c.rule_id == rule.id):
            click.echo(f"      -> channel {channel.id}: {channel.describe()}")


@alerts_group.command("notify")
@click.argument("rule_id", type=int)
@click.option("--webhook", help="POST each new alert of the rule to this URL.")
@click.option(
    "--format",
    "webhook_format",
    type=click.Choice(delivery.WEBHOOK_FORMATS),
    default="slack",
    show_default=True,
    help=delivery.WEBHOOK_FORMAT_HELP,
)
@click.option("--email", help="E-mail each new alert to this address (see alerts smtp).")
@click.option("--remove", "remove_id", type=int, help="Stop delivering to channel ID instead.")
@click.pass_context
def alerts_notify(ctx, rule_id, webhook, webhook_format, email, remove_id):
    """Deliver RULE_ID's new alerts to a webhook or an e-mail address, with retries."""
    with clitools.db(ctx) as db:
        if remove_id is not None:
            delivery.remove_channel(db, remove_id)
            click.echo(f"Channel {remove_id} removed; its delivery log is kept.")
            return
        channel = delivery.add_channel(
            db, rule_id, webhook=webhook, email=email, format=webhook_format
        )
    click.echo(
        f"Channel {channel.id}: rule {rule_id}'s new alerts go to {channel.describe()} "
        "(delivered by the watcher: python -m devmode watch)."
    )


@alerts_group.command("deliveries")
@click.argument("dataset", required=False)
@json_option("Print JSON instead of lines.")
@click.pass_context
def alerts_deliveries(ctx, dataset, as_json):
    """The delivery log (newest first): every alert sent or being retried, and why it failed."""
    with clitools.db(ctx) as db:
        rows = delivery.list_deliveries(db, dataset)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No deliveries yet.")
    for row in rows:
        error = (
            f": {row['last_error']}"
            if row["last_error"] and row["status"] != alerts.Delivery.DELIVERED
            else ""
        )
        click.echo(
            f"{row['id']:>4}  {row['status']:<9} rule {row['rule_id']}, {row['period']} of "
            f"{row['period_start']} -> {row['kind']} {row['target']} ({row['attempts']} tries){error}"
        )


@alerts_group.command("smtp")
@setting_options(delivery.SmtpSettings, required=("host", "sender"))
@click.pass_context
def alerts_smtp(ctx, **settings):
    """Set the mail server e-mail alerts go through (the password stays in an environment
    variable: only its name is stored)."""
    smtp = delivery.SmtpSettings(**settings)
    with clitools.db(ctx) as db:
        delivery.set_smtp_settings(db, smtp)
    login = f" as {smtp.user} (password from ${smtp.password_env})" if smtp.user else ""
    click.echo(f"E-mail alerts go through {smtp.host}:{smtp.port} ({smtp.security}){login}.")


@group("watchlist")
def watchlist_group():
    """Tickers with their names: who a text is about when the data has no ticker column."""


@watchlist_group.command("add")
@click.argument("ticker")
@click.option("--name", help="The company's name, matched as a whole word (e.g. Apple).")
@click.option("--alias", "aliases", multiple=True, help="Another name to match. Repeatable.")
@click.pass_context
def watchlist_add(ctx, ticker, name, aliases):
    """Add TICKER (matched as $TICKER, and by its names); every dataset is tagged again."""
    with clitools.db(ctx) as db:
        entry = watchlist.add_entry(db, ticker, name=name, aliases=aliases)
    click.echo(f"Watching {entry.describe()}: trends, alerts and the wall display follow it.")


@watchlist_group.command("list")
@click.pass_context
def watchlist_list(ctx):
    """The watchlist."""
    with clitools.db(ctx) as db:
        entries = watchlist.list_entries(db)
    if not entries:
        click.echo(
            "The watchlist is empty. Add one: python -m devmode watchlist add AAPL --name Apple"
        )
    for entry in entries:
        click.echo(entry.describe())


@watchlist_group.command("remove")
@click.argument("ticker")
@click.pass_context
def watchlist_remove(ctx, ticker):
    """Take TICKER off the watchlist (its mentions go with it)."""
    with clitools.db(ctx) as db:
        entry = watchlist.remove_entry(db, ticker)
    click.echo(f"Removed {entry.describe()}.")


@group("sources")
def sources_group():
    """Feeds and folders that add rows to a dataset by themselves (polled by the watcher)."""


@sources_group.command("add")
@click.argument("dataset")
@click.option("--feed", help="An RSS or Atom feed URL.")
@click.option(
    "--folder",
    type=click.Path(file_okay=False),
    help="A folder; CSV, TSV, JSON, JSONL or Parquet files dropped into it are added.",
)
@setting_options(sources.SourceSettings)
@click.pass_context
def sources_add(ctx, dataset, feed, folder, every):
    """Attach a feed or a folder to DATASET (created on the first poll when it does not exist)."""
    settings = sources.SourceSettings(every=every)
    with clitools.db(ctx) as db:
        source = sources.add_source(db, dataset, feed=feed, folder=folder, settings=settings)
    click.echo(
        f"Source {source.id}: {source.shown_location} -> {source.dataset}, every "
        f"{source.every_seconds} s. "
        "It is polled by the watcher: python -m devmode watch (or --once)."
    )


@sources_group.command("list")
@json_option("Print JSON instead of lines.")
@click.pass_context
def sources_list(ctx, as_json):
    """Every source with its health: last poll, items added, last error."""
    with clitools.db(ctx) as db:
        found = sources.list_sources(db)
        current = watcher.current_watcher(db)
    if as_json:
        echo_json([s.to_dict() for s in found])
        return
    if not found:
        click.echo("No sources yet. Add one: python -m devmode sources add DATASET --feed URL")
    for source in found:
        click.echo(f"{source.id:>4}  {source.kind:<6} {source.shown_location} -> {source.dataset}")
        click.echo(f"      {source.health()}")
    click.echo(current.describe() if current else "Not watching: python -m devmode watch")


@sources_group.command("remove")
@click.argument("source_id", type=int)
@click.pass_context
def sources_remove(ctx, source_id):
    """Stop polling SOURCE_ID; the rows it brought stay in the dataset."""
    with clitools.db(ctx) as db:
        source = sources.remove_source(db, source_id)
    click.echo(
        f"Source {source_id} removed ({source.shown_location}); its rows stay in {source.dataset}."
    )


@click.command("watch")
@click.option("--once", is_flag=True, help="One pass over every due source, then exit.")
@click.option("--stop", is_flag=True, help="Ask the running watcher to stop after its pass.")
@click.pass_context
def watch_command(ctx, once, stop):
    """Poll due sources, score new rows, evaluate alert rules and deliver alerts, until stopped.

    One watcher runs at a time (this command, or *Start watching* on the Monitor page).
    """
    db_path = clitools.db_path(ctx)
    if stop:
        with clitools.db(ctx) as db:
            stopped = watcher.stop_watching(db)
        click.echo(f"Asked watcher {stopped.id} to stop." if stopped else "No watcher is running.")
        return
    if once:
        summary = watcher.run_once(db_path)
        for line in summary.lines + summary.problems:
            click.echo(line)
        click.echo(
            f"Polled {summary.polled} sources: {summary.added:,} new rows, {summary.scored:,} "
            f"scored, {summary.new_alerts} new alerts, {summary.delivered} delivered."
        )
        return
    with clitools.db(ctx) as db:
        job = watcher.create_watcher(db)
    click.echo(f"Watcher {job.id} watching; Ctrl-C (or watch --stop) stops it.")
    try:
        watcher.execute_watcher(db_path, job.id, echo=click.echo)
    except KeyboardInterrupt:
        pass
    click.echo("Stopped watching.")


def register_commands(cli: click.Group) -> None:
    """Add these commands to the root group."""
    cli.add_command(score_command)
    cli.add_command(trends_command)
    cli.add_command(alerts_group)
    cli.add_command(watchlist_group)
    cli.add_command(sources_group)
    cli.add_command(watch_command)
