"""End to end on real data: 10 epochs of 784-256-128-10 on Fashion-MNIST, Adam 1e-3, batch 128, shuffled.

    python bench/fashion_end_to_end.py [--epochs 10]

Prints test accuracy and wall time for fastbp, scikit-learn and (if installed) PyTorch with the same settings.
Needs Debian's dataset-fashion-mnist (or the files in the fastbp cache).
"""

from __future__ import annotations

import argparse
import time
import warnings


def main():
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    import fastbp
    from fastbp.datasets import load_fashion_mnist

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=1, help="repeat fastbp and scikit-learn with this many seeds")
    args = parser.parse_args()
    X, y, X_test, y_test = load_fashion_mnist(download=False)
    settings = {"hidden_layer_sizes": (256, 128), "batch_size": 128, "max_iter": args.epochs, "alpha": 0.0}
    warnings.simplefilter("ignore")
    for seed in range(args.seeds):
        for name, Model in (("fastbp", fastbp.MLPClassifier), ("scikit-learn", SklearnMLP)):
            model = Model(**settings, random_state=seed, tol=0, n_iter_no_change=args.epochs + 1)
            start = time.perf_counter()
            model.fit(X, y)
            seconds = time.perf_counter() - start
            print(f"{name:>12} (seed {seed}): {seconds:6.1f} s, test accuracy {model.score(X_test, y_test):.4f}")
    try:
        import torch
    except ImportError:
        print("     PyTorch: not installed")
        return
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(Xt), generator=torch.Generator().manual_seed(epoch))
        for first in range(0, len(Xt), 128):
            rows = order[first : first + 128]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(Xt[rows]), yt[rows]).backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = (net(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean()
    print(f"{'PyTorch':>12}: {seconds:6.1f} s, test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
