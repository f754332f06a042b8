<?php
// The /body endpoint of the testbed, for php-fpm.  Same query language and
// same bytes as testbed/flup_app.py (see testbed/bodies.py).

require __DIR__ . '/bodies.php';

$size = (int)($_GET['size'] ?? 1000);
$seed = (int)($_GET['seed'] ?? 0);
$mode = $_GET['mode'] ?? 'length';
$binary = ($_GET['binary'] ?? '0') === '1';
$digest = $_GET['digest'] ?? '';
$lie = ($_GET['lie'] ?? '0') === '1';
$slow_ms = (int)($_GET['slow_ms'] ?? 0);
$chunk = max(1, (int)($_GET['chunk'] ?? 16384));

$body = testbed_make_body($size, $seed, !$binary);

header('Content-Type: ' . ($binary ? 'application/octet-stream' : 'text/plain'));
if ($digest === 'sha1') {
    header('X-Body-SHA1: ' . sha1($body));
} elseif ($digest === 'md5') {
    // RFC 1864: base64 of the raw MD5 digest.
    header('Content-MD5: ' . base64_encode(md5($body, true)));
}

// A lying app flips one byte after digesting (bodies.flip_middle_byte).
if ($lie && $size > 0) {
    $middle = intdiv($size, 2);
    $body[$middle] = chr(ord($body[$middle]) ^ 0x01);
}
if ($mode === 'length') {
    header('Content-Length: ' . strlen($body));
}

for ($start = 0; $start < strlen($body); $start += $chunk) {
    if ($start > 0 && $slow_ms > 0) {
        usleep($slow_ms * 1000);
    }
    echo substr($body, $start, $chunk);
    flush();
}
