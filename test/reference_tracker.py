"""The official tracker's per-frame arithmetic (docs/tracker.md), transcribed in its own structure.

Test-only: the parity test runs it beside ``CKDTracker`` on the same network and frames. It
shares no code with ``ckd_ros.tracker``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch


def sample_target(im, target_bb, search_area_factor, output_sz):
    x, y, w, h = target_bb
    crop_sz = math.ceil(math.sqrt(w * h) * search_area_factor)
    if crop_sz < 1:
        raise Exception("Too small bounding box.")
    x1 = round(x + 0.5 * w - crop_sz * 0.5)
    x2 = x1 + crop_sz
    y1 = round(y + 0.5 * h - crop_sz * 0.5)
    y2 = y1 + crop_sz
    x1_pad = max(0, -x1)
    x2_pad = max(x2 - im.shape[1] + 1, 0)
    y1_pad = max(0, -y1)
    y2_pad = max(y2 - im.shape[0] + 1, 0)
    im_crop = im[y1 + y1_pad : y2 - y2_pad, x1 + x1_pad : x2 - x2_pad, :]
    im_crop_padded = cv2.copyMakeBorder(im_crop, y1_pad, y2_pad, x1_pad, x2_pad, cv2.BORDER_CONSTANT)
    resize_factor = output_sz / crop_sz
    return cv2.resize(im_crop_padded, (output_sz, output_sz)), resize_factor


def hann2d(sz):
    h = 0.5 * (1 - torch.cos((2 * math.pi / (sz + 1)) * torch.arange(1, sz + 1).float()))
    return h.reshape(1, 1, -1, 1) * h.reshape(1, 1, 1, -1)


def clip_box(box, H, W, margin=0):
    x1, y1, w, h = box
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0, x1), W - margin)
    x2 = min(max(margin, x2), W)
    y1 = min(max(0, y1), H - margin)
    y2 = min(max(margin, y2), H)
    w = max(margin, x2 - x1)
    h = max(margin, y2 - y1)
    return [x1, y1, w, h]


class OfficialStyleTracker:
    mean = torch.tensor([0.485, 0.456, 0.406]).view((1, 3, 1, 1))
    std = torch.tensor([0.229, 0.224, 0.225]).view((1, 3, 1, 1))

    def __init__(self, network):
        self.network = network
        self.t_sz, self.s_sz = network.cfg.template_size, network.cfg.search_size
        self.feat_sz = network.cfg.search_feat
        self.output_window = hann2d(self.feat_sz)

    def process(self, img_arr):
        return ((torch.tensor(img_arr).float().permute((2, 0, 1)).unsqueeze(dim=0) / 255.0) - self.mean) / self.std

    def initialize(self, image_v, image_i, init_bbox):
        z_v, _ = sample_target(image_v, init_bbox, 2.0, self.t_sz)
        z_i, _ = sample_target(image_i, init_bbox, 2.0, self.t_sz)
        self.z = [self.process(z_v), self.process(z_i)]
        self.state = list(init_bbox)

    def track(self, image_v, image_i):
        H, W, _ = image_v.shape
        x_v, resize_factor = sample_target(image_v, self.state, 4.0, self.s_sz)
        x_i, _ = sample_target(image_i, self.state, 4.0, self.s_sz)
        with torch.no_grad():
            out = self.network(self.z[0], self.z[1], self.process(x_v), self.process(x_i))
        response = self.output_window * out["score_map"]
        fs = self.feat_sz
        _, idx = torch.max(response.flatten(1), dim=1, keepdim=True)
        idx_y, idx_x = idx // fs, idx % fs
        idx = idx.unsqueeze(1).expand(idx.shape[0], 2, 1)
        size = out["size_map"].flatten(2).gather(dim=2, index=idx)
        offset = out["offset_map"].flatten(2).gather(dim=2, index=idx).squeeze(-1)
        pred_boxes = torch.cat(
            [(idx_x.to(torch.float) + offset[:, :1]) / fs, (idx_y.to(torch.float) + offset[:, 1:]) / fs, size.squeeze(-1)],
            dim=1,
        ).view(-1, 4)
        pred_box = (pred_boxes.mean(dim=0) * self.s_sz / resize_factor).tolist()
        cx_prev, cy_prev = self.state[0] + 0.5 * self.state[2], self.state[1] + 0.5 * self.state[3]
        cx, cy, w, h = pred_box
        half_side = 0.5 * self.s_sz / resize_factor
        cx_real, cy_real = cx + (cx_prev - half_side), cy + (cy_prev - half_side)
        self.state = clip_box([cx_real - 0.5 * w, cy_real - 0.5 * h, w, h], H, W, margin=10)
        return self.state


def synthetic_frames(n=8, h=480, w=640, seed=0):
    """Smooth random frames with a drifting bright blob: enough structure for non-trivial crops."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 5)
    frames = []
    for i in range(n):
        rgb = base.copy()
        tir = np.repeat(cv2.cvtColor(base, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
        cv2.circle(rgb, (30 + 12 * i, 40 + 5 * i), 20, (255, 40, 40), -1)
        cv2.circle(tir, (30 + 12 * i, 40 + 5 * i), 20, (250, 250, 250), -1)
        frames.append((rgb, tir))
    return frames
