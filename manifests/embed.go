// Package manifests holds the files nfslab ships inside its binary: the guest root filesystem
// package list, the nfs-ganesha configuration template, and (later) cluster configs.
//
// The go:embed patterns below must each match at least one file or the package does not
// compile: when adding a file with a new extension, add its pattern here.
package manifests

import "embed"

// FS holds the embedded files, by their names in this directory.
//
//go:embed *.txt *.tmpl kind
var FS embed.FS

// RootfsPackages is the name in FS of the list of Debian packages installed into the guest
// root filesystem (one per line, '#' comments).
const RootfsPackages = "rootfs-packages.txt"

// RootfsKindPackages is the name in FS of the packages the kind form adds to RootfsPackages.
const RootfsKindPackages = "rootfs-kind-packages.txt"
