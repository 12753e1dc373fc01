"""Generate the small synthetic street-scene dataset of the demo.

The scenes are rendered with a pinhole camera looking down a street: sky,
building facades with windows on both sides and at the far end, a road with
lane marks, tiled sidewalks, trees, poles with traffic signs, pedestrians and
cars (rear and side faces with wheels), then lit, tinted, blurred and noised.
Every colour is jittered per image and the class colour ranges overlap (grey
road, sidewalks, facades, poles, overcast sky and cars; cars and signs in
any colour), so a class must be told from its texture, shape and place.

Written in the Cityscapes layout::

    <root>/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png
    <root>/gtFine/{train,val}/<city>/<name>_gtFine_labelIds.png
    <root>/gtFine/{train,val}/<city>/<name>_gtFine_labelTrainIds.png
    <root>/train.txt, <root>/val.txt
    <root>/demo_data.json   (the generation parameters)

The labels are drawn as Cityscapes label ids (from cityscapesscripts' label
table), converted to train ids by ``utils/convert_cityscapes_labels.py`` and
listed by ``utils/create_dataset_list.py``. Image ``i`` of a split depends
only on ``(seed, split, i, height, width)``, so the same arguments give
byte-identical files.

Example::

    python utils/make_demo_data.py --root data/demo --train 120 --val 24
"""

import argparse
import json
import os
import shutil
import sys

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import name2label

UTILS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(UTILS_DIR)
for _path in (ROOT, UTILS_DIR):  # the package, and the sibling tools when imported
    if _path not in sys.path:
        sys.path.insert(0, _path)

from paddleseg.errors import SegError  # noqa: E402

# The classes drawn, by their cityscapesscripts name.
CLASS_NAMES = ('road', 'sidewalk', 'building', 'pole', 'traffic sign',
               'vegetation', 'sky', 'person', 'car')
LABEL_ID = {name: name2label[name].id for name in CLASS_NAMES}
TRAIN_ID = {name: name2label[name].trainId for name in CLASS_NAMES}

SPLITS = {'train': ('bochum', 'dusseldorf'), 'val': ('frankfurt', )}
META_FILE = 'demo_data.json'
FORMAT_VERSION = 2  # bump when the rendering changes, to invalidate old data


# --------------------------------------------------------------------------
# Textures and drawing helpers. Images are float32 RGB in [0, 255].
# --------------------------------------------------------------------------
def smooth_noise(rng, h, w, cell, channels=1):
    """Zero-mean noise of unit-ish amplitude varying over ``cell`` pixels."""
    gh, gw = max(2, int(np.ceil(h / cell)) + 1), max(2, int(np.ceil(w / cell)) + 1)
    grid = rng.standard_normal((gh, gw, channels)).astype(np.float32)
    big = cv2.resize(grid, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
    big = big.reshape(gh * cell, gw * cell, channels)
    return big[:h, :w]


def jitter(rng, rgb, amount):
    """``rgb`` with each channel moved by up to ``amount``."""
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3),
                   0, 255)


def textured(rng, h, w, base, fine=8.0, coarse=12.0, cell=None):
    """A ``[h, w, 3]`` layer: ``base`` colour with blotches and grain."""
    cell = cell or max(4, min(h, w) // 6)
    layer = np.empty((h, w, 3), np.float32)
    layer[:] = base
    layer += coarse * smooth_noise(rng, h, w, cell)
    layer += fine * rng.standard_normal((h, w, 1)).astype(np.float32)
    return layer


class Canvas:
    """The image and its label map, painted together."""

    def __init__(self, height, width):
        self.h, self.w = height, width
        self.img = np.zeros((height, width, 3), np.float32)
        self.label = np.zeros((height, width), np.uint8)  # 0: unlabeled

    def paint(self, mask, layer, name):
        """Paint ``layer`` (a colour or an image) where ``mask`` is set."""
        mask = mask.astype(bool)
        self.img[mask] = layer[mask] if np.ndim(layer) == 3 else layer
        self.label[mask] = LABEL_ID[name]

    def shade(self, mask, factor):
        """Multiply the image by ``factor`` where ``mask`` is set (labels kept)."""
        self.img[mask.astype(bool)] *= factor

    def poly_mask(self, points):
        mask = np.zeros((self.h, self.w), np.uint8)
        pts = np.round(np.asarray(points, np.float64) * 16).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=4)
        return mask

    def ellipse_mask(self, center, axes):
        mask = np.zeros((self.h, self.w), np.uint8)
        c = tuple(int(round(v * 16)) for v in center)
        a = tuple(max(16, int(round(v * 16))) for v in axes)
        cv2.ellipse(mask, c, a, 0, 0, 360, 1, -1, cv2.LINE_8, 4)
        return mask

    def warp(self, sprite, sprite_mask, quad):
        """Map a flat ``sprite`` (and its mask) onto image quad ``quad``
        (corners top-left, top-right, bottom-right, bottom-left)."""
        sh, sw = sprite_mask.shape
        src = np.float32([[0, 0], [sw, 0], [sw, sh], [0, sh]])
        m = cv2.getPerspectiveTransform(src, np.float32(quad))
        img = cv2.warpPerspective(sprite, m, (self.w, self.h),
                                  flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpPerspective(sprite_mask, m, (self.w, self.h),
                                   flags=cv2.INTER_NEAREST,
                                   borderMode=cv2.BORDER_CONSTANT,
                                   borderValue=0)
        return img, mask


class Camera:
    """A level pinhole camera ``cam_h`` metres above the ground.

    World X is to the right, Y up, Z forward (depth, metres).
    """

    def __init__(self, f, cx, horizon, cam_h):
        self.f, self.cx, self.horizon, self.cam_h = f, cx, horizon, cam_h

    def project(self, x, y, z):
        return (self.cx + self.f * x / z,
                self.horizon + self.f * (self.cam_h - y) / z)

    def quad_x(self, x, z0, z1, y0, y1):
        """Image corners of the vertical plane ``X = x`` between depths
        ``z0..z1`` and heights ``y0..y1`` (sprite left = near end)."""
        return [self.project(x, y1, z0), self.project(x, y1, z1),
                self.project(x, y0, z1), self.project(x, y0, z0)]

    def quad_z(self, z, x0, x1, y0, y1):
        """Image corners of the frontal plane ``Z = z``."""
        return [self.project(x0, y1, z), self.project(x1, y1, z),
                self.project(x1, y0, z), self.project(x0, y0, z)]

    def pixels(self, metres, z):
        return self.f * metres / z


# --------------------------------------------------------------------------
# Palettes (RGB); every colour is further jittered per object.
# --------------------------------------------------------------------------
FACADE_COLOURS = ((150, 150, 150), (120, 118, 112), (185, 170, 145),
                  (160, 95, 75), (200, 190, 175), (100, 100, 108),
                  (175, 150, 120), (135, 125, 135), (215, 205, 185))
CAR_COLOURS = ((200, 200, 205), (40, 40, 45), (150, 150, 155), (170, 30, 30),
               (30, 60, 150), (235, 235, 235), (90, 100, 70), (120, 80, 50),
               (200, 170, 40), (60, 110, 120))
CLOTHES = ((30, 30, 40), (60, 60, 70), (150, 40, 40), (40, 60, 130),
           (200, 200, 190), (90, 70, 50), (50, 100, 60), (180, 150, 60))
SKIN = ((225, 185, 150), (190, 140, 100), (140, 95, 65), (95, 65, 45))


def facade_sprite(rng, length_m, height_m, base, px_per_m=6):
    """A flat facade with floors of windows, a ground floor and a roof rim."""
    sw = max(8, int(length_m * px_per_m))
    sh = max(8, int(height_m * px_per_m))
    sprite = textured(rng, sh, sw, base, fine=6, coarse=10,
                      cell=max(4, px_per_m * 2))
    floor_h = rng.uniform(2.8, 3.6) * px_per_m
    bay = rng.uniform(2.2, 3.5) * px_per_m
    win_w = bay * rng.uniform(0.35, 0.6)
    win_h = floor_h * rng.uniform(0.4, 0.6)
    glass = jitter(rng, rng.choice([(50, 60, 75), (95, 115, 140),
                                    (35, 35, 40), (140, 150, 160)]), 20)
    frame = np.clip(base * rng.uniform(1.1, 1.3), 0, 255)
    lit = rng.uniform(0, 0.25)
    ground = floor_h * rng.uniform(1.1, 1.5)
    y = sh - ground - floor_h
    while y > floor_h * 0.3:
        x = (bay - win_w) / 2 + rng.uniform(-1, 1)
        while x + win_w < sw:
            x0, y0 = int(x), int(y + (floor_h - win_h) / 2)
            x1, y1 = int(x + win_w), int(y0 + win_h)
            colour = glass * (rng.uniform(1.4, 1.8) if rng.random() < lit
                              else rng.uniform(0.85, 1.15))
            cv2.rectangle(sprite, (x0 - 1, y0 - 1), (x1 + 1, y1 + 1),
                          frame.tolist(), -1)
            cv2.rectangle(sprite, (x0, y0), (x1, y1),
                          np.clip(colour, 0, 255).tolist(), -1)
            if rng.random() < 0.5:  # window cross
                cv2.line(sprite, ((x0 + x1) // 2, y0), ((x0 + x1) // 2, y1),
                         frame.tolist(), 1)
            x += bay
        y -= floor_h
    # ground floor: shop windows and doors
    shop = jitter(rng, (60, 65, 70), 25)
    x = rng.uniform(0, bay)
    while x < sw:
        wdt = bay * rng.uniform(0.6, 1.6)
        top = int(sh - ground * rng.uniform(0.75, 0.9))
        cv2.rectangle(sprite, (int(x), top), (int(x + wdt), sh - 1),
                      shop.tolist(), -1)
        x += wdt + bay * rng.uniform(0.4, 1.0)
    # roof rim
    cv2.rectangle(sprite, (0, 0), (sw - 1, max(1, int(0.4 * px_per_m))),
                  np.clip(base * 0.7, 0, 255).tolist(), -1)
    return sprite, np.ones((sh, sw), np.uint8)


def car_back_sprite(rng, body, px=20):
    """Rear view of a car, 1.8 m x 1.5 m; the mask follows the silhouette."""
    sw, sh = int(1.8 * px), int(1.5 * px)
    sprite = np.zeros((sh, sw, 3), np.float32)
    mask = np.zeros((sh, sw), np.uint8)
    cabin = np.int32([[0.15 * sw, 0.05 * sh], [0.85 * sw, 0.05 * sh],
                      [0.95 * sw, 0.45 * sh], [0.05 * sw, 0.45 * sh]])
    cv2.fillPoly(sprite, [cabin], body.tolist())
    cv2.fillPoly(mask, [cabin], 1)
    cv2.rectangle(sprite, (0, int(0.42 * sh)), (sw - 1, int(0.85 * sh)),
                  body.tolist(), -1)
    cv2.rectangle(mask, (0, int(0.42 * sh)), (sw - 1, int(0.85 * sh)), 1, -1)
    window = np.int32([[0.2 * sw, 0.1 * sh], [0.8 * sw, 0.1 * sh],
                       [0.88 * sw, 0.4 * sh], [0.12 * sw, 0.4 * sh]])
    cv2.fillPoly(sprite, [window], jitter(rng, (40, 45, 55), 15).tolist())
    light = jitter(rng, (200, 30, 30), 30).tolist()
    cv2.rectangle(sprite, (1, int(0.5 * sh)), (int(0.18 * sw), int(0.62 * sh)),
                  light, -1)
    cv2.rectangle(sprite, (int(0.82 * sw), int(0.5 * sh)),
                  (sw - 2, int(0.62 * sh)), light, -1)
    cv2.rectangle(sprite, (int(0.38 * sw), int(0.62 * sh)),
                  (int(0.62 * sw), int(0.74 * sh)), (225, 225, 215), -1)
    cv2.rectangle(sprite, (0, int(0.76 * sh)), (sw - 1, int(0.85 * sh)),
                  (np.asarray(body) * 0.5).tolist(), -1)
    for x0 in (int(0.04 * sw), int(0.76 * sw)):  # wheels
        cv2.rectangle(sprite, (x0, int(0.8 * sh)), (x0 + int(0.2 * sw), sh - 1),
                      (22, 22, 24), -1)
        cv2.rectangle(mask, (x0, int(0.8 * sh)), (x0 + int(0.2 * sw), sh - 1),
                      1, -1)
    sprite += 5 * rng.standard_normal((sh, sw, 1)).astype(np.float32)
    return sprite, mask


def car_side_sprite(rng, body, length=4.4, px=20):
    """Side view of a car, ``length`` m x 1.5 m, front at the sprite's right."""
    sw, sh = int(length * px), int(1.5 * px)
    sprite = np.zeros((sh, sw, 3), np.float32)
    mask = np.zeros((sh, sw), np.uint8)
    cabin = np.int32([[0.22 * sw, 0.05 * sh], [0.62 * sw, 0.05 * sh],
                      [0.78 * sw, 0.42 * sh], [0.08 * sw, 0.42 * sh]])
    cv2.fillPoly(sprite, [cabin], body.tolist())
    cv2.fillPoly(mask, [cabin], 1)
    cv2.rectangle(sprite, (0, int(0.4 * sh)), (sw - 1, int(0.8 * sh)),
                  body.tolist(), -1)
    cv2.rectangle(mask, (0, int(0.4 * sh)), (sw - 1, int(0.8 * sh)), 1, -1)
    glass = jitter(rng, (45, 50, 60), 15).tolist()
    cv2.fillPoly(sprite, [np.int32([[0.25 * sw, 0.1 * sh], [0.42 * sw, 0.1 * sh],
                                    [0.42 * sw, 0.38 * sh],
                                    [0.13 * sw, 0.38 * sh]])], glass)
    cv2.fillPoly(sprite, [np.int32([[0.45 * sw, 0.1 * sh], [0.6 * sw, 0.1 * sh],
                                    [0.72 * sw, 0.38 * sh],
                                    [0.45 * sw, 0.38 * sh]])], glass)
    cv2.line(sprite, (int(0.43 * sw), int(0.4 * sh)),
             (int(0.43 * sw), int(0.78 * sh)),
             (np.asarray(body) * 0.6).tolist(), 1)
    r = int(0.2 * sh) + 1
    for cx in (int(0.2 * sw), int(0.8 * sw)):  # wheels with rims
        cv2.circle(sprite, (cx, sh - r), r, (22, 22, 24), -1)
        cv2.circle(sprite, (cx, sh - r), max(1, r // 2), (150, 150, 155), -1)
        cv2.circle(mask, (cx, sh - r), r, 1, -1)
    sprite += 5 * rng.standard_normal((sh, sw, 1)).astype(np.float32)
    return sprite, mask


# --------------------------------------------------------------------------
# The scene.
# --------------------------------------------------------------------------
def _ground_quad(cam, x0, x1, z0, z1):
    return [cam.project(x0, 0, z1), cam.project(x1, 0, z1),
            cam.project(x1, 0, z0), cam.project(x0, 0, z0)]


def draw_sky(rng, cv):
    h, w = cv.h, cv.w
    if rng.random() < 0.35:  # overcast: greys that overlap facades and roads
        top = jitter(rng, (165, 170, 180), 25)
        low = np.clip(top + rng.uniform(5, 30), 0, 255)
    else:
        top = jitter(rng, (70, 120, 195), 25)
        low = jitter(rng, (170, 195, 225), 20)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    sky = top * (1 - t) + low * t + np.zeros((h, w, 3), np.float32)
    clouds = np.clip(smooth_noise(rng, h, w, max(6, w // 8)) - 0.3, 0, None)
    sky += clouds * rng.uniform(20, 70)
    sky += 2.5 * rng.standard_normal((h, w, 1)).astype(np.float32)
    cv.paint(np.ones((h, w), bool), sky, 'sky')


def draw_ground(rng, cv, cam, street, z_far):
    h, w = cv.h, cv.w
    below = np.zeros((h, w), bool)
    below[int(np.ceil(cam.horizon)):] = True
    # sidewalks: tiles in a jittered light colour
    walk = textured(rng, h, w, jitter(rng, rng.choice(
        [(150, 145, 140), (175, 150, 150), (135, 135, 140)]), 20),
        fine=7, coarse=10)
    grout = np.clip(walk * rng.uniform(0.72, 0.85), 0, 255)
    tile = rng.uniform(0.5, 1.0)
    tiles = np.zeros((h, w), np.uint8)
    for z in np.arange(street['z_near'], z_far, tile):
        y = cam.project(0, 0, z)[1]
        if y - cam.horizon < 4:
            break
        cv2.line(tiles, (0, int(y)), (w - 1, int(y)), 1, 1)
    for side, edge in ((-1, street['left']), (1, street['right'])):
        width = street['walk_l' if side < 0 else 'walk_r']
        for k in np.arange(tile, width, tile):
            x = edge + side * k
            p0, p1 = cam.project(x, 0, street['z_near']), cam.project(x, 0, z_far)
            cv2.line(tiles, tuple(int(v) for v in p0), tuple(int(v) for v in p1),
                     1, 1)
    walk[tiles > 0] = grout[tiles > 0]
    cv.paint(below, walk, 'sidewalk')
    # kerb stones (part of the sidewalk)
    kerb = jitter(rng, (185, 185, 180), 20)
    for x0, x1 in ((street['left'] - 0.25, street['left']),
                   (street['right'], street['right'] + 0.25)):
        cv.paint(cv.poly_mask(_ground_quad(cam, x0, x1, street['z_near'], z_far)),
                 kerb, 'sidewalk')
    # the road and its marks (marks are road in Cityscapes)
    road_mask = cv.poly_mask(_ground_quad(cam, street['left'], street['right'],
                                          street['z_near'], z_far))
    asphalt = textured(rng, h, w, jitter(rng, (90, 90, 95), 20), fine=9,
                       coarse=9, cell=max(4, w // 20))
    cv.paint(road_mask, asphalt, 'road')
    mark = jitter(rng, (215, 215, 205), 25)
    for x in (street['left'] + 0.3, street['right'] - 0.45):  # edge lines
        cv.paint(cv.poly_mask(_ground_quad(cam, x, x + 0.15, street['z_near'],
                                           z_far)), mark, 'road')
    dash, gap = rng.uniform(2, 4), rng.uniform(3, 7)
    z = street['z_near'] + rng.uniform(0, dash + gap)
    for centre in street['lane_lines']:
        while z < z_far:
            cv.paint(cv.poly_mask(_ground_quad(cam, centre - 0.08, centre + 0.08,
                                               z, z + dash)), mark, 'road')
            z += dash + gap
        z = street['z_near'] + rng.uniform(0, dash + gap)
    # patches and cast shadows keep the road from being one flat colour
    for _ in range(rng.integers(0, 3)):
        x0 = rng.uniform(street['left'], street['right'] - 1)
        z0 = rng.uniform(street['z_near'] + 2, 40)
        quad = _ground_quad(cam, x0, x0 + rng.uniform(0.6, 3), z0,
                            z0 + rng.uniform(1, 6))
        cv.shade(cv.poly_mask(quad).astype(bool) & road_mask.astype(bool),
                 rng.uniform(0.75, 1.2))


def draw_facades(rng, cv, cam, street, z_far):
    """Buildings along both sides and across the far end of the street."""
    sun = rng.uniform(0.7, 1.15, 2)  # brightness of the left/right sides
    for i, (side, x) in enumerate(((-1, street['left'] - street['walk_l']),
                                   (1, street['right'] + street['walk_r']))):
        z = street['z_near'] * rng.uniform(0.3, 0.8)
        while z < z_far:
            length = rng.uniform(8, 25)
            height = rng.uniform(5, 18)
            base = jitter(rng, FACADE_COLOURS[rng.integers(len(FACADE_COLOURS))],
                          25) * sun[i]
            sprite, mask = facade_sprite(rng, length, height, base)
            z1 = min(z + length, z_far)
            img, m = cv.warp(sprite, mask, cam.quad_x(x, z, z1, 0, height))
            cv.paint(m, img, 'building')
            if rng.random() < 0.3:  # a hedge in front of the facade
                hedge_h = rng.uniform(0.7, 1.3)
                xh = x - side * 0.4
                quad = cam.quad_x(xh, z, z1, 0, hedge_h)
                leaf = textured(rng, 8, 40, jitter(rng, (60, 95, 45), 20),
                                fine=22, coarse=12, cell=4)
                img, m = cv.warp(leaf, np.ones((8, 40), np.uint8), quad)
                cv.paint(m, img, 'vegetation')
            z = z1 + (rng.uniform(0.5, 3) if rng.random() < 0.3 else 0)
    # the far end
    span = street['right'] - street['left'] + street['walk_l'] + street['walk_r']
    x0 = street['left'] - street['walk_l'] - 5
    height = rng.uniform(6, 20)
    sprite, mask = facade_sprite(rng, span + 10, height, jitter(rng, FACADE_COLOURS[
        rng.integers(len(FACADE_COLOURS))], 25), px_per_m=4)
    img, m = cv.warp(sprite, mask, cam.quad_z(z_far, x0, x0 + span + 10, 0,
                                              height))
    cv.paint(m, img, 'building')


def tree(rng, cv, cam, x, z):
    trunk_h = rng.uniform(1.8, 3.0)
    trunk_w = rng.uniform(0.2, 0.35)
    bark = jitter(rng, (85, 65, 45), 20)
    cv.paint(cv.poly_mask(cam.quad_z(z, x - trunk_w / 2, x + trunk_w / 2, 0,
                                     trunk_h + 0.5)), bark, 'vegetation')
    radius = rng.uniform(1.2, 2.6)
    cx, cy = cam.project(x, trunk_h + radius * 0.8, z)
    r = cam.pixels(radius, z)
    mask = np.zeros((cv.h, cv.w), np.uint8)
    for _ in range(rng.integers(4, 9)):
        ox, oy = rng.uniform(-0.6, 0.6, 2) * r
        mask |= cv.ellipse_mask((cx + ox, cy + oy),
                                (r * rng.uniform(0.5, 0.8), r * rng.uniform(0.45, 0.75)))
    leaf = textured(rng, cv.h, cv.w, jitter(rng, rng.choice(
        [(70, 110, 45), (50, 85, 40), (100, 125, 55), (80, 100, 60)]), 20),
        fine=20, coarse=15, cell=3)
    cv.paint(mask, leaf, 'vegetation')


def pole_with_sign(rng, cv, cam, x, z, sign):
    height = rng.uniform(3.0, 5.5)
    width = max(rng.uniform(0.18, 0.28), 3.2 * z / cam.f)  # >= ~3 px wide
    metal = jitter(rng, rng.choice([(120, 125, 125), (70, 75, 75),
                                    (150, 150, 145)]), 20)
    cv.paint(cv.poly_mask(cam.quad_z(z, x - width / 2, x + width / 2, 0, height)),
             metal * rng.uniform(0.9, 1.1), 'pole')
    if not sign:
        return
    size = rng.uniform(0.8, 1.3)
    cx, cy = cam.project(x, height - size / 2 - rng.uniform(0, 0.5), z)
    r = max(3.5, cam.pixels(size / 2, z))
    kind = rng.integers(4)
    outer, inner = [((200, 30, 35), (235, 235, 230)), ((30, 70, 170), (230, 230, 235)),
                    ((230, 190, 30), (40, 40, 40)), ((235, 235, 230), (30, 70, 170))][kind]
    outer, inner = jitter(rng, outer, 25), jitter(rng, inner, 20)
    if kind == 0:
        mask = cv.ellipse_mask((cx, cy), (r, r))
        core = cv.ellipse_mask((cx, cy), (r * 0.65, r * 0.65))
    elif kind == 1:
        mask = cv.ellipse_mask((cx, cy), (r, r))
        core = cv.poly_mask([(cx - r * 0.5, cy + r * 0.2), (cx + r * 0.5, cy + r * 0.2),
                             (cx, cy - r * 0.5)])
    elif kind == 2:
        mask = cv.poly_mask([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)])
        core = cv.poly_mask([(cx, cy - r * 0.6), (cx + r * 0.6, cy), (cx, cy + r * 0.6),
                             (cx - r * 0.6, cy)])
    else:
        mask = cv.poly_mask([(cx - r, cy - r * 0.7), (cx + r, cy - r * 0.7),
                             (cx + r, cy + r * 0.7), (cx - r, cy + r * 0.7)])
        core = cv.poly_mask([(cx - r * 0.7, cy - r * 0.4), (cx + r * 0.7, cy - r * 0.4),
                             (cx + r * 0.7, cy + r * 0.4), (cx - r * 0.7, cy + r * 0.4)])
    cv.paint(mask, outer, 'traffic sign')
    cv.paint(mask & core, inner, 'traffic sign')


def person(rng, cv, cam, x, z):
    height = rng.uniform(1.55, 1.95)
    shirt = jitter(rng, CLOTHES[rng.integers(len(CLOTHES))], 25)
    trousers = jitter(rng, CLOTHES[rng.integers(len(CLOTHES))], 25)
    skin = jitter(rng, SKIN[rng.integers(len(SKIN))], 15)
    hw = 0.22
    stride = rng.uniform(-0.15, 0.15)
    legs = 0.47 * height
    for dx in (-0.1, 0.1):
        foot = x + dx + stride * np.sign(dx)
        cv.paint(cv.poly_mask([cam.project(x + dx - 0.08, legs, z),
                               cam.project(x + dx + 0.08, legs, z),
                               cam.project(foot + 0.07, 0, z),
                               cam.project(foot - 0.07, 0, z)]), trousers, 'person')
    top = 0.82 * height
    cv.paint(cv.poly_mask(cam.quad_z(z, x - hw, x + hw, legs - 0.05, top)), shirt,
             'person')
    for dx in (-hw - 0.06, hw + 0.06):  # arms
        cv.paint(cv.poly_mask(cam.quad_z(z, x + dx - 0.06, x + dx + 0.06,
                                         legs + 0.02, top)), shirt * 0.9, 'person')
    hx, hy = cam.project(x, height - 0.11, z)
    hr = max(1.0, cam.pixels(0.12, z))
    cv.paint(cv.ellipse_mask((hx, hy), (hr, hr * 1.2)), skin, 'person')
    if rng.random() < 0.6:  # hair
        cv.paint(cv.ellipse_mask((hx, hy - hr * 0.5), (hr, hr * 0.6)),
                 jitter(rng, (45, 35, 25), 20), 'person')


def car(rng, cv, cam, x, z, parked):
    body = jitter(rng, CAR_COLOURS[rng.integers(len(CAR_COLOURS))], 20)
    length = rng.uniform(3.8, 4.8)
    # a soft shadow under the car darkens the road (label unchanged)
    shadow = cv.poly_mask(_ground_quad(cam, x - 1.0, x + 1.0, z, z + length))
    cv.shade(shadow, rng.uniform(0.5, 0.7))
    if abs(x) > 1.0:  # the side facing the camera is visible
        side_x = x - np.sign(x) * 0.9
        sprite, mask = car_side_sprite(rng, body, length)
        if x > 0:  # seen from the left: the car's front is far, sprite flipped
            sprite, mask = sprite[:, ::-1].copy(), mask[:, ::-1].copy()
        if parked and rng.random() < 0.5:
            sprite, mask = sprite[:, ::-1].copy(), mask[:, ::-1].copy()
        img, m = cv.warp(sprite * rng.uniform(0.8, 0.95), mask,
                         cam.quad_x(side_x, z, z + length, 0, 1.5))
        cv.paint(m, img, 'car')
    sprite, mask = car_back_sprite(rng, body)
    img, m = cv.warp(sprite, mask, cam.quad_z(z, x - 0.9, x + 0.9, 0, 1.5))
    cv.paint(m, img, 'car')


def street_layout(rng, cam):
    lanes = int(rng.integers(1, 4))
    lane_w = rng.uniform(2.8, 3.6)
    left = -rng.uniform(0.3, 0.8) * lanes * lane_w
    right = left + lanes * lane_w
    return {
        'left': left, 'right': right, 'lanes': lanes, 'lane_w': lane_w,
        'lane_lines': [left + k * lane_w for k in range(1, lanes)],
        'walk_l': rng.uniform(3.0, 6.0), 'walk_r': rng.uniform(3.0, 6.0),
        'z_near': 1.0,
    }


def finish(rng, img):
    """Lighting, colour cast, vignetting, blur and sensor noise."""
    h, w = img.shape[:2]
    img = img * rng.uniform(0.65, 1.25) * rng.uniform(0.88, 1.12, 3)
    gx = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
    gy = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
    img = img * (1 + rng.uniform(-0.2, 0.2) * gx) * \
        (1 - rng.uniform(0, 0.3) * (gx ** 2 + gy ** 2) / 2)
    img = (img - 128) * rng.uniform(0.8, 1.15) + 128
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9))
    img += rng.uniform(3, 9) * rng.standard_normal(img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render_scene(rng, height, width):
    """One street scene: ``(RGB uint8 [H, W, 3], label ids uint8 [H, W])``.

    Every image has at least one car, person, tree and pole with a sign.
    """
    cam = Camera(f=width * rng.uniform(0.55, 0.75),
                 cx=width * rng.uniform(0.4, 0.6),
                 horizon=height * rng.uniform(0.36, 0.5),
                 cam_h=rng.uniform(1.3, 1.8))
    cv = Canvas(height, width)
    street = street_layout(rng, cam)
    z_far = rng.uniform(60, 140)
    draw_sky(rng, cv)
    draw_ground(rng, cv, cam, street, z_far)
    draw_facades(rng, cv, cam, street, z_far)

    z_min = cam.f * cam.cam_h / (height - cam.horizon) * 1.2  # nearest in view
    objects = []  # (depth, kind, x, extra)

    def walk_x(side, lo, hi):
        if side < 0:
            return street['left'] - 0.25 - street['walk_l'] * rng.uniform(lo, hi)
        return street['right'] + 0.25 + street['walk_r'] * rng.uniform(lo, hi)

    for k in range(int(rng.integers(2, 6))):
        objects.append((rng.uniform(z_min + 2, 45), 'tree',
                        walk_x(rng.choice((-1, 1)), 0.5, 0.8), None))
    # the first pole (with a sign) and person stand where they are in view
    for k in range(int(rng.integers(2, 6))):
        objects.append((rng.uniform(max(z_min + 1, 8) if k == 0 else z_min + 1,
                                    20), 'pole',
                        walk_x(rng.choice((-1, 1)), 0.05, 0.2), k == 0 or
                        rng.random() < 0.6))
    for k in range(int(rng.integers(3, 8))):
        objects.append((rng.uniform(max(z_min, 5) if k == 0 else z_min, 14),
                        'person',
                        walk_x(rng.choice((-1, 1)), 0.2, 0.9), None))
    for k in range(int(rng.integers(2, 7))):
        parked = rng.random() < 0.5
        if parked:
            x = (street['left'] + 1.1) if rng.random() < 0.5 else \
                (street['right'] - 1.1)
        else:
            lane = rng.integers(street['lanes'])
            x = street['left'] + (lane + 0.5) * street['lane_w']
        objects.append((rng.uniform(z_min + 1, 22), 'car', x, parked))
    for z, kind, x, extra in sorted(objects, key=lambda o: -o[0]):
        if kind == 'tree':
            tree(rng, cv, cam, x, z)
        elif kind == 'pole':
            pole_with_sign(rng, cv, cam, x, z, extra)
        elif kind == 'person':
            person(rng, cv, cam, x, z)
        else:
            car(rng, cv, cam, x, z, extra)
    return finish(rng, cv.img), cv.label


# --------------------------------------------------------------------------
# Files.
# --------------------------------------------------------------------------
def image_rng(seed, split, index):
    """The generator of image ``index`` of ``split``: independent per image."""
    return np.random.default_rng([seed, list(SPLITS).index(split), index])


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, png = cv2.imencode('.png', array)
    if not ok:
        raise OSError('cannot encode {}'.format(path))
    png.tofile(path)


def write_split(root, split, count, height, width, seed):
    """Render and write the images and label-id maps of one split.

    Returns:
        list: The image paths written.
    """
    cities = SPLITS[split]
    paths = []
    for i in range(count):
        city = cities[i % len(cities)]
        name = '{}_{:06d}_{:06d}'.format(city, i // len(cities), 19)
        img, label_ids = render_scene(image_rng(seed, split, i), height, width)
        img_path = os.path.join(root, 'leftImg8bit', split, city,
                                name + '_leftImg8bit.png')
        write_png(img_path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        write_png(os.path.join(root, 'gtFine', split, city,
                               name + '_gtFine_labelIds.png'), label_ids)
        paths.append(img_path)
    return paths


def demo_params(train, val, height, width, seed):
    return {'version': FORMAT_VERSION, 'train': train, 'val': val,
            'height': height, 'width': width, 'seed': seed}


def is_up_to_date(root, params):
    """Whether ``root`` holds a complete dataset made with ``params``."""
    try:
        with open(os.path.join(root, META_FILE)) as f:
            if json.load(f) != params:
                return False
    except (OSError, ValueError):
        return False
    for split in SPLITS:
        list_path = os.path.join(root, split + '.txt')
        if not os.path.isfile(list_path):
            return False
        with open(list_path) as f:
            if sum(1 for line in f if line.strip()) != params[split]:
                return False
    return True


def make_demo_data(root, train=120, val=24, height=128, width=256, seed=0,
                   force=False, verbose=True):
    """Make the demo dataset in ``root`` unless it is already there.

    An existing dataset made with the same arguments (see ``demo_data.json``)
    is kept unless ``force``; otherwise ``leftImg8bit/`` and ``gtFine/`` are
    replaced.

    Returns:
        bool: True if the data was (re)generated, False if it was up to date.
    """
    if train < 1 or val < 1:
        raise ValueError('--train and --val must be at least 1')
    if height < 32 or width < 32:
        raise ValueError('--height and --width must be at least 32')
    params = demo_params(train, val, height, width, seed)
    if not force and is_up_to_date(root, params):
        if verbose:
            print('{} is up to date (seed {}, {} train + {} val, {}x{})'.format(
                root, seed, train, val, height, width))
        return False
    meta = os.path.join(root, META_FILE)
    if os.path.exists(meta):
        os.remove(meta)  # an interrupted run is never taken as complete
    for sub in ('leftImg8bit', 'gtFine'):
        shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
    for split in SPLITS:
        write_split(root, split, params[split], height, width, seed)
    import convert_cityscapes_labels as converter
    converter.convert_cityscapes_labels(root, num_workers=1, force=True,
                                        progress=False)
    import create_dataset_list as lister
    written = lister.create_dataset_lists(root, 'cityscapes',
                                          splits=tuple(SPLITS))
    with open(meta, 'w') as f:
        json.dump(params, f, indent=1, sort_keys=True)
    if verbose:
        for path, n in written.values():
            print('wrote {} ({} images)'.format(path, n))
    return True


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Generate the synthetic Cityscapes-layout street scenes '
        'of the demo.')
    p.add_argument('--root', default='data/demo', help='output folder')
    p.add_argument('--train', type=int, default=120, help='training images')
    p.add_argument('--val', type=int, default=24, help='validation images')
    p.add_argument('--height', type=int, default=128, help='image height')
    p.add_argument('--width', type=int, default=256, help='image width')
    p.add_argument('--seed', type=int, default=0, help='random seed')
    p.add_argument('--force', action='store_true',
                   help='regenerate even if the data is up to date')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        make_demo_data(args.root, args.train, args.val, args.height,
                       args.width, args.seed, args.force)
    except (ValueError, OSError, SegError) as exc:
        print('error: {}'.format(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
