import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gradCheck, type GradCase } from './gradcheck.js';
import { WGRAD_FOLD } from '../src/ops/grad/conv.js';

async function ok(c: GradCase): Promise<void> {
  const r = await gradCheck(c);
  assert.deepEqual(r.failures, [], `max rel err ${r.maxErr} (${r.dtype})`);
  assert.ok(r.checked > 0);
}

test('Conv: plain 3x3 pad 1, with bias', () =>
  ok({
    inputs: [{ name: 'x', dims: [2, 3, 6, 5] }, { name: 'w', dims: [4, 3, 3, 3] }, { name: 'b', dims: [4] }],
    build: (b, n) => b.node('Conv', [n.x!, n.w!, n.b!], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
  }));

test('Conv: stride 2, asymmetric pads, odd sizes', () =>
  ok({
    inputs: [{ name: 'x', dims: [2, 2, 7, 6] }, { name: 'w', dims: [3, 2, 3, 2] }],
    build: (b, n) => b.node('Conv', [n.x!, n.w!], { kernel_shape: [3, 2], pads: [0, 1, 2, 0], strides: [2, 3] }),
  }));

test('Conv: groups, dilations, strides', () =>
  ok({
    inputs: [{ name: 'x', dims: [2, 4, 9, 8] }, { name: 'w', dims: [6, 2, 3, 3] }, { name: 'b', dims: [6] }],
    build: (b, n) => b.node('Conv', [n.x!, n.w!, n.b!], { kernel_shape: [3, 3], group: 2, dilations: [2, 1], strides: [1, 2], pads: [1, 0, 1, 1] }),
  }));

test('Conv: depthwise, SAME_UPPER', () =>
  ok({
    inputs: [{ name: 'x', dims: [1, 3, 5, 5] }, { name: 'w', dims: [3, 1, 3, 3] }],
    build: (b, n) => b.node('Conv', [n.x!, n.w!], { kernel_shape: [3, 3], group: 3, strides: [2, 2], auto_pad: 'SAME_UPPER' }),
  }));

test('Conv: 1x1 stride 2 (ResNet shortcut)', () =>
  ok({
    inputs: [{ name: 'x', dims: [2, 4, 7, 7] }, { name: 'w', dims: [5, 4, 1, 1] }],
    build: (b, n) => b.node('Conv', [n.x!, n.w!], { kernel_shape: [1, 1], strides: [2, 2] }),
  }));

test('Conv: 1-D', () =>
  ok({
    inputs: [{ name: 'x', dims: [2, 3, 11] }, { name: 'w', dims: [2, 3, 4] }],
    build: (b, n) => b.node('Conv', [n.x!, n.w!], { kernel_shape: [4], strides: [3], pads: [2, 1] }),
  }));

test('ConvTranspose: stride 2, pads, output_padding, bias', () =>
  ok({
    inputs: [{ name: 'x', dims: [2, 3, 4, 5] }, { name: 'w', dims: [3, 2, 3, 3] }, { name: 'b', dims: [2] }],
    build: (b, n) => b.node('ConvTranspose', [n.x!, n.w!, n.b!], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 0, 1, 1], output_padding: [1, 0] }),
  }));

test('ConvTranspose: groups and dilations', () =>
  ok({
    inputs: [{ name: 'x', dims: [1, 4, 3, 4] }, { name: 'w', dims: [4, 3, 2, 3] }],
    build: (b, n) => b.node('ConvTranspose', [n.x!, n.w!], { kernel_shape: [2, 3], group: 2, dilations: [2, 1], strides: [1, 2] }),
  }));

test('Conv: stride 1 with dilations, asymmetric pads and groups (contiguous-tap weight gradient)', () =>
  ok({
    inputs: [{ name: 'x', dims: [2, 4, 7, 6] }, { name: 'w', dims: [6, 2, 3, 2] }, { name: 'b', dims: [6] }],
    build: (b, n) => b.node('Conv', [n.x!, n.w!, n.b!], { kernel_shape: [3, 2], group: 2, dilations: [2, 3], pads: [2, 0, 1, 3] }),
  }));

test('Conv: stride 1, group 1, dilations and asymmetric pads: the batch-folded and the per-image weight gradients', async () => {
  const spec: GradCase = {
    inputs: [{ name: 'x', dims: [3, 4, 7, 6] }, { name: 'w', dims: [5, 4, 3, 2] }, { name: 'b', dims: [5] }],
    build: (b, n) => b.node('Conv', [n.x!, n.w!, n.b!], { kernel_shape: [3, 2], dilations: [2, 3], pads: [2, 0, 1, 3] }),
  };
  const saved = WGRAD_FOLD.maxPositions;
  try {
    for (const maxPositions of [Infinity, 0]) {
      WGRAD_FOLD.maxPositions = maxPositions;
      await ok(spec);
    }
  } finally {
    WGRAD_FOLD.maxPositions = saved;
  }
});

test('Conv: depthwise stride 1, no padding', () =>
  ok({
    inputs: [{ name: 'x', dims: [2, 3, 6, 5] }, { name: 'w', dims: [3, 1, 3, 3] }],
    build: (b, n) => b.node('Conv', [n.x!, n.w!], { kernel_shape: [3, 3], group: 3 }),
  }));
