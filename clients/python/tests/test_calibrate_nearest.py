"""`flowgate calibrate --nearest` on a model whose energy file has no bank sources (as every model
trained before 2026-12-03): the trainer's bank draw is replayed from the dataset, the sources are
added to energy.safetensors (read back here with Python's safetensors), the manifest asks for the
nearest-source proposals, and the model still loads. The energy file is edited here with Python's
safetensors, so flowgate also reads what Python writes."""
import json
import subprocess

import numpy as np

from realserver import BIN, require_real_server

require_real_server(model=False)
import safetensors.numpy as safetensors_numpy  # noqa: E402  (clients/python/requirements.txt)


def _tiny_dataset(path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, 3)).astype(np.float32)
    act = np.clip(0.5 * obs[:, :2] + 0.1 * rng.standard_normal((n, 2)), -1, 1).astype(np.float32)
    nxt = (0.9 * obs + 0.1 * np.pad(act, ((0, 0), (0, 1)))).astype(np.float32)
    np.savez(path, observations=obs, actions=act, rewards=-np.abs(act[:, 0]).astype(np.float32),
             next_observations=nxt, terminals=np.zeros(n, bool), timeouts=np.zeros(n, bool))


def _run(*args):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout + p.stderr


def test_calibrate_nearest_adds_the_trainers_bank_sources(tmp_path):
    dataset, model = tmp_path / "tiny.npz", tmp_path / "model"
    _tiny_dataset(dataset)
    config = tmp_path / "small.json"
    config.write_text(json.dumps({"policy": {"hiddenDims": [8]}, "critic": {"hiddenDims": [8]}}))
    rc, out = _run("train", "--dataset", dataset, "--out", model, "--run-dir", tmp_path / "run", "--config", config,
                   "--batch-size", "8", "--behaviour-steps", "3", "--critic-steps", "3", "--qipo-steps", "3",
                   "--energy", "--energy-steps", "2", "--energy-autoencoder-steps", "2")
    assert rc == 0, out
    energy_file = model / "energy.safetensors"
    tensors = safetensors_numpy.load_file(str(energy_file))
    sources = tensors["bank_sources"]
    bank = tensors["latent_bank"]
    assert sources.shape == (bank.shape[0], 3 + 2)  # new models record (s_z, a) per entry
    # Make it an older model: no sources in the file or the manifest, random proposals.
    del tensors["bank_sources"]
    safetensors_numpy.save_file(tensors, str(energy_file))
    manifest_path = model / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    energy = manifest["networks"]["energy"]
    del energy["fixedTensors"]["bank_sources"]
    energy["options"].pop("nearestProposals", None)
    energy["options"]["proposals"] = 32
    manifest_path.write_text(json.dumps(manifest))
    rc, out = _run("inspect", model)
    assert rc == 0, out

    rc, out = _run("calibrate", "--model", model, "--dataset", dataset, "--samples", "1", "--langevin-steps", "0",
                   "--proposals", "4", "--nearest", "--calibration-rows", "20")
    assert rc == 0, out
    assert "draw recovered" in out, out
    after = safetensors_numpy.load_file(str(energy_file))
    np.testing.assert_array_equal(after["latent_bank"], bank)  # latents kept
    np.testing.assert_array_equal(after["bank_sources"], sources)  # the trainer's sources, replayed
    manifest = json.loads(manifest_path.read_text())
    energy = manifest["networks"]["energy"]
    assert energy["options"]["nearestProposals"] == 1 and energy["options"]["proposals"] == 4
    assert energy["fixedTensors"]["bank_sources"] == list(sources.shape)
    rc, out = _run("inspect", model)
    assert rc == 0, out


def test_nearest_needs_langevin_zero(tmp_path):
    rc, out = _run("calibrate", "--model", tmp_path, "--dataset", tmp_path / "x.npz", "--samples", "1",
                   "--langevin-steps", "5", "--proposals", "4", "--nearest")
    assert rc != 0 and "--nearest needs --langevin-steps 0" in out, out
