"""PyTorch reference training step for bench/train.ts (benchmark only; never needed by the product or tests).

The model is fmnist_resnet20's architecture: CIFAR-style ResNet-20 (16/32/64 channels, 3 stages of 3 basic
blocks, 1x1 conv shortcuts where the shape changes), 1-channel 28x28 input, 10 classes. With --bn (the shared
README's reference: "training step, batch 128 (SGD, train mode)") every conv is followed by BatchNorm in train
mode and has no bias; without, the convs carry biases and there is no BatchNorm (the model as exported, BN
folded). One step = forward, cross-entropy, backward, SGD (lr 0.01, momentum 0.9 nesterov, wd 5e-4).

Protocol (so the caller can interleave its own steps with these on the same machine load): after start-up it
prints one JSON line {"ready": ..., "torch": version, "threads": T}; then for every line "STEPS n" on stdin it
runs n steps and prints {"ms": [per-step wall ms...], "cpuMs": [per-step process CPU ms...]}; for "PROFILE n"
it runs n steps under torch.autograd.profiler and prints the self CPU time per step by op; "QUIT" ends.
"""
import argparse
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride, bn):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=not bn)
        self.b1 = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=not bn)
        self.b2 = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=not bn), nn.BatchNorm2d(cout) if bn else nn.Identity())

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (self.short(x) if self.short is not None else x))


class ResNet20(nn.Module):
    def __init__(self, bn):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, 1, 1, bias=not bn)
        self.bn = nn.BatchNorm2d(16) if bn else nn.Identity()
        layers = []
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(Block(cin, cout, stride if i == 0 else 1, bn))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--bn", action="store_true")
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ResNet20(a.bn).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(a.batch, 1, 28, 28)
    y = torch.arange(a.batch) % 10

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(), "bn": a.bn, "params": params}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "QUIT":
            break
        n = int(cmd[1])
        if cmd[0] == "PROFILE":
            # PyTorch's own profile of n steps: self CPU time by op (per step), the counterpart of onnxruntime's.
            t = time.perf_counter()
            with torch.autograd.profiler.profile() as prof:
                for _ in range(n):
                    step()
            wall = (time.perf_counter() - t) * 1000 / n
            rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in rows) / 1000 / n
            by_op = [{"op": e.key, "ms": e.self_cpu_time_total / 1000 / n, "calls": e.count / n} for e in rows[:12]]
            print(json.dumps({"stepMs": wall, "selfCpuMs": total, "byOp": by_op}), flush=True)
            continue
        ms, cpu = [], []
        for _ in range(n):
            t, c = time.perf_counter(), time.process_time()
            step()
            ms.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        print(json.dumps({"ms": ms, "cpuMs": cpu}), flush=True)


if __name__ == "__main__":
    main()
