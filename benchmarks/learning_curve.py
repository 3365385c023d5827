"""Compares a Toys run's validation curve with the reference's (REFERENCE.md).

    python benchmarks/learning_curve.py --history runs/toys/history.csv

Prints a markdown table of valid NDCG@20 / HR@20 per epoch beside the reference's,
then one JSON object on its last line: for epochs 20, 30 and 40, our NDCG@20, the
reference's, and whether ours is at least 0.9 x the reference's.
"""

import argparse
import csv
import json

# Valid (NDCG@20, HR@20) after each epoch of the reference trained from scratch on
# Toys with the preset, seed 1, on this project's CPU machine (REFERENCE.md).
REFERENCE_CURVE = {
    1: (0.0017, 0.0045), 2: (0.0025, 0.0076), 3: (0.0028, 0.0086), 4: (0.0032, 0.0096),
    5: (0.0036, 0.0103), 6: (0.0044, 0.0111), 7: (0.0044, 0.0111), 8: (0.0053, 0.0129),
    9: (0.0065, 0.0156), 10: (0.0073, 0.0167), 11: (0.0085, 0.0184), 12: (0.0094, 0.0195),
    13: (0.0105, 0.0205), 14: (0.0115, 0.0226), 15: (0.0126, 0.0241), 16: (0.0129, 0.0247),
    17: (0.0135, 0.0261), 18: (0.0142, 0.0276), 19: (0.0150, 0.0288), 20: (0.0152, 0.0292),
    21: (0.0157, 0.0303), 22: (0.0165, 0.0322), 23: (0.0170, 0.0338), 24: (0.0181, 0.0351),
    25: (0.0180, 0.0354), 26: (0.0186, 0.0365), 27: (0.0186, 0.0368), 28: (0.0198, 0.0396),
    29: (0.0202, 0.0398), 30: (0.0209, 0.0413), 31: (0.0218, 0.0440), 32: (0.0215, 0.0441),
    33: (0.0214, 0.0441), 34: (0.0227, 0.0466), 35: (0.0237, 0.0485), 36: (0.0232, 0.0479),
    37: (0.0239, 0.0489), 38: (0.0237, 0.0497), 39: (0.0253, 0.0524), 40: (0.0263, 0.0549),
    41: (0.0260, 0.0540),
}
CHECKED_EPOCHS = (20, 30, 40)
TOLERANCE = 0.9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", required=True, help="a run's history.csv")
    args = parser.parse_args()
    with open(args.history) as stream:
        rows = {int(row["epoch"]) + 1: row for row in csv.DictReader(stream)}

    print("| epoch | valid NDCG@20 | reference | ratio | valid HR@20 | reference |")
    print("|---|---|---|---|---|---|")
    for epoch, row in sorted(rows.items()):
        ours_ndcg, ours_hr = float(row["val_NDCG@20"]), float(row["val_HR@20"])
        ref_ndcg, ref_hr = REFERENCE_CURVE.get(epoch, (None, None))
        ratio = f"{ours_ndcg / ref_ndcg:.2f}" if ref_ndcg else ""
        print(f"| {epoch} | {ours_ndcg:.4f} | {'' if ref_ndcg is None else f'{ref_ndcg:.4f}'} "
              f"| {ratio} | {ours_hr:.4f} | {'' if ref_hr is None else f'{ref_hr:.4f}'} |")
    checks = {}
    for epoch in CHECKED_EPOCHS:
        if epoch in rows:
            ours, reference = float(rows[epoch]["val_NDCG@20"]), REFERENCE_CURVE[epoch][0]
            checks[str(epoch)] = {"ndcg20": round(ours, 4), "reference": reference,
                                  "passes": ours >= TOLERANCE * reference}
    print(json.dumps(checks))


if __name__ == "__main__":
    main()
