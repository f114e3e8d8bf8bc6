// Package kernels holds the kernel recipes nfslab ships inside its binary, one directory per
// recipe: recipe.json (description, source package, base configs, file names), the patch
// applied to the source, and the config fragment. lab/kernel/recipe reads them.
package kernels

import "embed"

// FS holds the recipe directories, by their names in this directory.
//
//go:embed */*
var FS embed.FS
