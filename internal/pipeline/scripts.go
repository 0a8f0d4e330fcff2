package pipeline

import _ "embed"

// The step scripts. They are constant: values from the spec reach them only as
// environment variables and arguments declared on the steps, because Tekton
// substitutes $(params...) into script text before running it.
var (
	//go:embed scripts/prepare.sh
	scriptPrepare string
	//go:embed scripts/clone.sh
	scriptClone string
	//go:embed scripts/install.sh
	scriptInstall string
	//go:embed scripts/maven.sh
	scriptMaven string
	//go:embed scripts/build.sh
	scriptBuild string
	//go:embed scripts/push.sh
	scriptPush string
	//go:embed scripts/cleanup.sh
	scriptCleanup string
)
