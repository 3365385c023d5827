"""The test logs of `pipelines/prepare.py`, made from fixed seeds, their writers, and
running the command as the shell does.

`expected/` beside this file holds what the hand-written preparation (before
DuckDB) wrote for the logs of `EXPECTED_RUNS`: the engines must write the same
bytes.
"""

import csv
import datetime
import json
import pathlib
import random

from iclrec_tf import cli
from iclrec_tf.prepare import cli as prepare_cli

EXPECTED = pathlib.Path(__file__).parent / "expected"

# name -> (log file name, the log's writer, prepare's extra flags)
EXPECTED_RUNS = {
    "shop": ("events.csv", lambda path: write_csv(path, generated_events()), []),
    "shop_tsv": ("events.tsv", lambda path: write_csv(path, generated_events(), delimiter="\t"),
                 []),
    "ratings": ("ratings.csv", lambda path: write_csv(path, amazon_rows(), header=None),
                ["--preset", "amazon"]),
    "heavy": ("heavy.csv", lambda path: write_csv(path, heavy_user_events()), []),
    "dated": ("dated.jsonl", lambda path: write_jsonl(path, dated_events()),
              ["--rating-col", "rating"]),
    "reviews": ("review.json", lambda path: write_reviews(path, generated_events(seed=5)),
                ["--preset", "yelp"]),
}


def generated_events(seed=0, users=40, items=25):
    """`[(user, item, time), ...]` in input order, with duplicates, ties and sparse tails."""
    rng = random.Random(seed)
    user_ids = [f"user {u:02d}" if u % 3 else f"ü{u},x" for u in range(users)]
    item_ids = [f"sku-{i:03d}" if i % 4 else f"item,{i}" for i in range(items)]
    events = []
    for user in user_ids:
        # A few users with 3-6 events: some fall below 5 at once, others once
        # their rare items are gone.
        count = rng.randint(3, 6) if rng.random() < 0.3 else rng.randint(6, 14)
        for _ in range(count):
            # A skewed choice, so that the last items are rare.
            item = item_ids[min(int(rng.expovariate(1 / 7)), items - 1)]
            events.append((user, item, rng.randint(1, 6) * 100))  # few times: many ties
    # A cascade: the rare item goes in round 1, which leaves its four users
    # with 4 events each, too few, in round 2.
    for chain in range(4):
        events += [(f"chain {chain}", item_ids[step], 700 + step) for step in range(4)]
        events.append((f"chain {chain}", "rare item", 800))
    rng.shuffle(events)
    for index in rng.sample(range(len(events)), 15):
        events.insert(rng.randrange(len(events)), events[index])  # exact duplicates
    return events


def amazon_rows(seed=1):
    """Amazon-shaped `(user, item, rating, time)` rows, the first 20 repeated at the end."""
    rng = random.Random(seed)
    rows = [(f"A{rng.randrange(30):04d}", f"B{min(int(rng.expovariate(1 / 8)), 40):05d}",
             f"{rng.randint(1, 5)}.0", str(1_300_000_000 + rng.randrange(50) * 86400))
            for _ in range(700)]
    return rows + rows[:20]


def heavy_user_events():
    """One heavy user (200 events, times descending) among 30 light ones of 5."""
    events = [(f"light {u}", f"item {(u + step) % 6}", step) for u in range(30)
              for step in range(5)]
    events[40:40] = [("heavy", f"item {step % 6}", 1000 - step) for step in range(200)]
    return events


def dated_events(seed=2):
    """`generated_events` with ISO 8601 times (some with an offset) and ratings."""
    rng = random.Random(seed)
    dated = []
    for user, item, time in generated_events(seed=seed):
        moment = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc) + \
            datetime.timedelta(hours=time)
        text = (moment.strftime("%Y-%m-%d %H:%M:%S") if time % 200 else
                moment.astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat())
        dated.append((user, item, text, float(rng.randint(1, 2))))
    return dated


def write_csv(path, events, header=("user_id", "item_id", "timestamp"), delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, delimiter=delimiter)
        if header:
            writer.writerow(header)
        writer.writerows(events)
    return path


def write_jsonl(path, events, fields=("user_id", "item_id", "timestamp", "rating")):
    with open(path, "w", encoding="utf-8") as stream:
        for event in events:
            stream.write(json.dumps(dict(zip(fields, event, strict=True)), ensure_ascii=False)
                         + "\n")
    return path


def write_reviews(path, events):
    """Yelp-shaped reviews: dates as text, a review text with quotes and a line break."""
    with open(path, "w", encoding="utf-8") as stream:
        for number, (user, item, time) in enumerate(events):
            date = datetime.datetime(2019, 5, 1) + datetime.timedelta(days=time // 100,
                                                                      minutes=time)
            stream.write(json.dumps({"review_id": f"r{number}", "user_id": user,
                                     "business_id": item, "stars": 4.0,
                                     "text": "Good, \"very\"\ngood.",
                                     "date": date.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
    return path


def run_main(argv, capsys):
    """`(exit code, stdout lines, stderr lines)` of the command, as the shell sees it."""
    try:
        code = cli.run(lambda: prepare_cli.main(argv), prepare_cli.PROG)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def dataset_bytes(directory):
    """`{file name: bytes}` of a prepared directory, the sequence file as `sequences`."""
    directory = pathlib.Path(directory)
    files = {name: (directory / name).read_bytes()
             for name in ("items.txt", "users.txt", "stats.json")}
    files["sequences"] = (directory / f"{directory.name}.txt").read_bytes()
    return files
