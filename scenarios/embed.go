// Package scenarios holds nfslab's built-in scenarios. `nfslab run NAME` loads NAME.yaml from
// here; a user's own file has the same format (see failover.yaml for a commented one).
package scenarios

import "embed"

// FS holds the built-in scenario files, one per *.yaml file.
//
//go:embed *.yaml
var FS embed.FS
