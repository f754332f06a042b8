<?php
// Port of testbed/bodies.py: make_body() must give the same bytes as the
// Python function for every size, seed and kind.  A test pins that.

const TESTBED_LINE_LENGTH = 64;
const TESTBED_ALPHABET =
    'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const TESTBED_BINARY_BLOCK = 32;

function testbed_make_body(int $size, int $seed, bool $text = true): string
{
    if ($size < 0 || $seed < 0 || $seed > 4294967295) {
        throw new ValueError("bad size $size or seed $seed");
    }
    return $text ? testbed_text_body($size, $seed)
                 : testbed_binary_body($size, $seed);
}

function testbed_text_body(int $size, int $seed): string
{
    // Each line: zero-padded offset, the seed, then a rotation of the
    // alphabet, up to LINE_LENGTH bytes with the newline.
    $doubled = TESTBED_ALPHABET . TESTBED_ALPHABET;
    $count = intdiv($size + TESTBED_LINE_LENGTH - 1, TESTBED_LINE_LENGTH);
    $lines = [];
    for ($line = 0; $line < $count; $line++) {
        $prefix = sprintf('%010d s%d ', $line * TESTBED_LINE_LENGTH, $seed);
        $start = ($seed + $line) % strlen(TESTBED_ALPHABET);
        $fill = TESTBED_LINE_LENGTH - 1 - strlen($prefix);
        $lines[] = $prefix . substr($doubled, $start, $fill) . "\n";
    }
    return substr(implode('', $lines), 0, $size);
}

function testbed_binary_body(int $size, int $seed): string
{
    // SHA-256 in counter mode: block k is sha256("<seed>:<k>").
    $count = intdiv($size + TESTBED_BINARY_BLOCK - 1, TESTBED_BINARY_BLOCK);
    $blocks = [];
    for ($block = 0; $block < $count; $block++) {
        $blocks[] = hash('sha256', "$seed:$block", true);
    }
    return substr(implode('', $blocks), 0, $size);
}
