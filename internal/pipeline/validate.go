package pipeline

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ErrInvalidSpec is wrapped by every error Generate returns for a spec the
// user must fix (as opposed to a programming error such as a nil Build).
// Controllers can test for it with errors.Is and stop retrying.
var ErrInvalidSpec = errors.New("invalid MultiArchBuild spec")

// The patterns below repeat the CEL rules of api/v1alpha1: Generate may see
// objects that never went through the API server (tests, dry runs, an older
// CRD still installed), and these values end up in pod specs and argv.
var (
	gitURLPattern     = regexp.MustCompile(`^(https?|ssh|git)://[^[:space:]/@]+(@[^[:space:]/@]+)?(/[^[:space:]]*)?$`)
	gitSCPPattern     = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^[:space:]]+$`)
	revisionPattern   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._/+-]*$`)
	relPathPattern    = regexp.MustCompile(`^[A-Za-z0-9._@+/-]*$`)
	imagePattern      = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$`)
	buildArgPattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	installCmdPattern = regexp.MustCompile(`^[A-Za-z0-9_./:=@+,%-]+( [A-Za-z0-9_./:=@+,%-]+)*$`)
	goalPattern       = regexp.MustCompile(`^[A-Za-z0-9_:.=/,+@-]+$`)
	// tektonVariable is what Tekton would substitute in a value it passes on,
	// such as $(context.pipelineRun.name) or $(params["x"]): a build argument
	// must reach buildah as written, so such values are refused rather than
	// silently rewritten.
	tektonVariable = regexp.MustCompile(`\$\(\s*[A-Za-z]+\s*[.\[]`)
)

// The CEL rules of spec.source.git.url against option injection and embedded
// credentials, mirrored.
var (
	// gitURLOption finds a '-' where git or ssh would read an argument: at the
	// start of the URL's user, host or port, or of the host or path of a
	// scp-like user@host:path (plus a leading '-', checked apart).
	gitURLOption = []*regexp.Regexp{
		regexp.MustCompile(`^[A-Za-z0-9+.-]*://([^/]*[@:[])?-`),
		regexp.MustCompile(`^[^/:]*@([^/:]*:)?-`),
	}
	// gitURLCredentials finds a user or password in an http(s) or git:// URL,
	// or a password in an ssh or scp-like one.
	gitURLCredentials = []*regexp.Regexp{
		regexp.MustCompile(`^(https?|git)://[^/@]*@`),
		regexp.MustCompile(`^ssh://[^/@]*:[^/@]*@`),
		regexp.MustCompile(`^[^/@:]*:[^/@]*@`),
	}
)

// Defaults applied when a field is empty, matching the CRD's defaults.
var (
	defaultPlatforms   = []v1alpha1.Platform{v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64}
	defaultMavenGoals  = []string{"package", "-DskipTests"}
	defaultTimeout     = time.Hour
	defaultRevision    = "main"
	defaultContextDir  = "."
	defaultContainerfn = "Containerfile"
)

// plan is a validated MultiArchBuild spec with every default applied: the only
// form of the spec the builders below read.
type plan struct {
	runName        string
	namespace      string
	buildName      string
	gitURL         string
	revision       string
	gitSecret      string
	contextDir     string
	containerfile  string
	strategy       v1alpha1.StrategyType
	buildArgs      []string // NAME=VALUE
	nodeImage      string
	installCommand []string // empty: npm ci / npm install, decided by the script
	mavenImage     string
	mavenGoals     []string
	mavenSettings  string
	platforms      []v1alpha1.Platform
	image          string // registry/repository:tag, tag defaulted to latest
	repository     string // registry/repository
	pushSecret     string
	cacheRepo      string // layer cache repository; empty: no layer cache
	builderImage   string
	gitImage       string
	serviceAccount string
	timeout        time.Duration
	claim          string
	generation     int64
	rebuildToken   string              // label-safe hash of the rebuild annotation, "" when none
	retryToken     string              // the retry-failed annotation's value, "" when none
	retry          *Retry              // nil for a full run
	built          []v1alpha1.Platform // the platforms this run builds: all but the reused
	tolerations    map[string][]corev1.Toleration
	owner          *metav1.OwnerReference
}

// specError names the field and wraps ErrInvalidSpec.
func specError(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, args...))
}

// newPlan validates in and applies the defaults.
func newPlan(in Input) (*plan, error) {
	b := in.Build
	if b == nil {
		return nil, errors.New("pipeline: Input.Build is nil")
	}
	s := in.Settings
	spec := b.Spec
	p := &plan{
		namespace: b.Namespace,
		buildName: b.Name,
		claim:     in.WorkspaceClaim,
	}

	if errs := validation.IsDNS1123Subdomain(b.Name); len(errs) > 0 {
		return nil, specError("metadata.name", "%s", strings.Join(errs, "; "))
	}
	if b.Namespace != "" {
		if errs := validation.IsDNS1123Label(b.Namespace); len(errs) > 0 {
			return nil, specError("metadata.namespace", "%s", strings.Join(errs, "; "))
		}
	}
	if b.Generation < 0 {
		return nil, specError("metadata.generation", "must not be negative, got %d", b.Generation)
	}
	if errs := validation.IsDNS1123Subdomain(in.WorkspaceClaim); len(errs) > 0 {
		// Not a spec field: the controller names the claim.
		return nil, fmt.Errorf("pipeline: Input.WorkspaceClaim %q: %s", in.WorkspaceClaim, strings.Join(errs, "; "))
	}
	p.runName = RunName(b)
	p.generation = b.Generation
	p.rebuildToken = rebuildLabel(b.Annotations[v1alpha1.RebuildAnnotation])
	p.retryToken = b.Annotations[v1alpha1.RetryFailedAnnotation]
	p.tolerations = s.Tolerations
	if b.UID != "" {
		p.owner = metav1.NewControllerRef(b, v1alpha1.GroupVersion.WithKind("MultiArchBuild"))
	}

	// Source.
	git := spec.Source.Git
	switch {
	case git.URL == "":
		return nil, specError("spec.source.git.url", "is required")
	case len(git.URL) > 2048:
		return nil, specError("spec.source.git.url", "must be at most 2048 characters")
	case matchesAny(gitURLCredentials, git.URL):
		// Checked first, and the value is not repeated: it holds a secret.
		return nil, specError("spec.source.git.url", "must not embed credentials (https://user:password@host/..., https://token@host/... or a password in an ssh URL): store them in a Secret and name it in spec.source.git.secretRef")
	case !gitURLPattern.MatchString(git.URL) && !gitSCPPattern.MatchString(git.URL):
		return nil, specError("spec.source.git.url", "must be an https://, http://, ssh:// or git:// URL, or scp-like user@host:path, without spaces, got %q", git.URL)
	case strings.HasPrefix(git.URL, "-") || matchesAny(gitURLOption, git.URL):
		return nil, specError("spec.source.git.url", "must not start with '-', and neither may its user, host or port, nor the path of a user@host:path URL: git and ssh would take it as a command-line option, got %q", git.URL)
	}
	if tektonVariable.MatchString(git.URL) {
		return nil, specError("spec.source.git.url", "must not contain a Tekton variable reference such as $(context...), got %q", git.URL)
	}
	p.gitURL = git.URL
	p.revision = orDefault(git.Revision, defaultRevision)
	if len(p.revision) > 255 || !revisionPattern.MatchString(p.revision) || strings.Contains(p.revision, "..") ||
		strings.HasSuffix(p.revision, ".lock") || strings.HasSuffix(p.revision, "/") {
		return nil, specError("spec.source.git.revision", "must be a branch, tag or commit SHA: letters, digits and . _ / + -, not starting with '-' and without '..', got %q", p.revision)
	}
	if git.SecretRef != nil {
		if err := secretName("spec.source.git.secretRef.name", git.SecretRef.Name); err != nil {
			return nil, err
		}
		p.gitSecret = git.SecretRef.Name
	}
	var err error
	if p.contextDir, err = relPath("spec.source.contextDir", orDefault(spec.Source.ContextDir, defaultContextDir)); err != nil {
		return nil, err
	}

	// Strategy.
	st := spec.Strategy
	p.strategy = st.Type
	if p.strategy == "" {
		p.strategy = v1alpha1.StrategyContainerfile
	}
	switch p.strategy {
	case v1alpha1.StrategyContainerfile, v1alpha1.StrategyNodeJS, v1alpha1.StrategyMaven:
	default:
		return nil, specError("spec.strategy.type", "must be Containerfile, NodeJS or Maven, got %q", p.strategy)
	}
	if st.NodeJS != nil && p.strategy != v1alpha1.StrategyNodeJS {
		return nil, specError("spec.strategy.nodejs", "is only allowed when spec.strategy.type is NodeJS")
	}
	if st.Maven != nil && p.strategy != v1alpha1.StrategyMaven {
		return nil, specError("spec.strategy.maven", "is only allowed when spec.strategy.type is Maven")
	}
	if p.containerfile, err = relPath("spec.strategy.containerfile", orDefault(st.Containerfile, defaultContainerfn)); err != nil {
		return nil, err
	}
	if p.containerfile == "." {
		return nil, specError("spec.strategy.containerfile", "must name a file, got %q", st.Containerfile)
	}
	if len(st.BuildArgs) > 64 {
		return nil, specError("spec.strategy.buildArgs", "must have at most 64 entries, got %d", len(st.BuildArgs))
	}
	seen := map[string]bool{}
	for i, a := range st.BuildArgs {
		field := fmt.Sprintf("spec.strategy.buildArgs[%d]", i)
		if len(a.Name) > 128 || !buildArgPattern.MatchString(a.Name) {
			return nil, specError(field+".name", "must be a variable name: letters, digits and _, not starting with a digit, got %q", a.Name)
		}
		if seen[a.Name] {
			return nil, specError(field+".name", "duplicate build argument %q", a.Name)
		}
		seen[a.Name] = true
		if len(a.Value) > 4096 {
			return nil, specError(field+".value", "must be at most 4096 characters")
		}
		if tektonVariable.MatchString(a.Value) {
			return nil, specError(field+".value", "must not contain a Tekton variable reference such as $(params.x) or $(context.x), which Tekton would substitute, got %q", a.Value)
		}
		p.buildArgs = append(p.buildArgs, a.Name+"="+a.Value)
	}
	switch p.strategy {
	case v1alpha1.StrategyNodeJS:
		n := st.NodeJS
		if n == nil {
			n = &v1alpha1.NodeJSStrategy{}
		}
		if p.nodeImage, err = imageRef("spec.strategy.nodejs.image", orDefault(n.Image, s.NodeJSImage), true); err != nil {
			return nil, err
		}
		if n.InstallCommand != "" {
			if len(n.InstallCommand) > 1024 || !installCmdPattern.MatchString(n.InstallCommand) {
				return nil, specError("spec.strategy.nodejs.installCommand",
					"is run as a plain argument list, not by a shell: words of letters, digits and _ . / : = @ + , %% - separated by single spaces, got %q", n.InstallCommand)
			}
			p.installCommand = strings.Split(n.InstallCommand, " ")
		}
	case v1alpha1.StrategyMaven:
		m := st.Maven
		if m == nil {
			m = &v1alpha1.MavenStrategy{}
		}
		if p.mavenImage, err = imageRef("spec.strategy.maven.image", orDefault(m.Image, s.MavenImage), true); err != nil {
			return nil, err
		}
		p.mavenGoals = m.Goals
		if len(p.mavenGoals) == 0 {
			p.mavenGoals = defaultMavenGoals
		}
		if len(p.mavenGoals) > 32 {
			return nil, specError("spec.strategy.maven.goals", "must have at most 32 entries, got %d", len(p.mavenGoals))
		}
		for i, g := range p.mavenGoals {
			if len(g) > 256 || !goalPattern.MatchString(g) {
				return nil, specError(fmt.Sprintf("spec.strategy.maven.goals[%d]", i),
					"may contain only letters, digits and _ : . = / , + @ -, got %q", g)
			}
		}
		if m.SettingsSecretRef != nil {
			if err := secretName("spec.strategy.maven.settingsSecretRef.name", m.SettingsSecretRef.Name); err != nil {
				return nil, err
			}
			p.mavenSettings = m.SettingsSecretRef.Name
		}
	}

	// Platforms.
	p.platforms = spec.Platforms
	if len(p.platforms) == 0 {
		p.platforms = defaultPlatforms
	}
	if len(p.platforms) > 4 {
		return nil, specError("spec.platforms", "must have 1 to 4 entries, got %d", len(p.platforms))
	}
	seenPlatform := map[v1alpha1.Platform]bool{}
	for i, pl := range p.platforms {
		switch pl {
		case v1alpha1.PlatformLinuxAMD64, v1alpha1.PlatformLinuxARM64, v1alpha1.PlatformLinuxPPC64LE, v1alpha1.PlatformLinuxS390X:
		default:
			return nil, specError(fmt.Sprintf("spec.platforms[%d]", i), "must be linux/amd64, linux/arm64, linux/ppc64le or linux/s390x, got %q", pl)
		}
		if seenPlatform[pl] {
			return nil, specError(fmt.Sprintf("spec.platforms[%d]", i), "duplicate platform %q", pl)
		}
		seenPlatform[pl] = true
	}

	// Output.
	out := spec.Output
	if out.Image == "" {
		return nil, specError("spec.output.image", "is required")
	}
	if strings.Contains(out.Image, "@") {
		return nil, specError("spec.output.image", "must not carry a digest (@sha256:...): give registry/repository[:tag]")
	}
	if _, err := imageRef("spec.output.image", out.Image, false); err != nil {
		return nil, err
	}
	p.repository, p.image = splitTag(out.Image)
	if out.PushSecretRef != nil {
		if err := secretName("spec.output.pushSecretRef.name", out.PushSecretRef.Name); err != nil {
			return nil, err
		}
		p.pushSecret = out.PushSecretRef.Name
	}
	if c := out.LayerCache; s.LayerCache && (c == nil || c.Mode != v1alpha1.LayerCacheDisabled) {
		p.cacheRepo = p.repository
		if c != nil && c.Repository != "" {
			if _, err := imageRef("spec.output.layerCache.repository", c.Repository, false); err != nil {
				return nil, err
			}
			if repo, _ := splitTag(c.Repository); repo != c.Repository {
				return nil, specError("spec.output.layerCache.repository", "must be registry/repository without a tag (the cache names its tags), got %q", c.Repository)
			}
			p.cacheRepo = c.Repository
		}
	}

	// Pods.
	if spec.BuilderImage != "" {
		if p.builderImage, err = imageRef("spec.builderImage", spec.BuilderImage, true); err != nil {
			return nil, err
		}
	} else if p.builderImage = s.BuilderImage; p.builderImage == "" {
		return nil, errors.New("pipeline: Settings.BuilderImage is empty")
	}
	if p.gitImage = s.GitImage; p.gitImage == "" {
		return nil, errors.New("pipeline: Settings.GitImage is empty")
	}
	p.serviceAccount = orDefault(spec.ServiceAccountName, s.ServiceAccountName)
	if p.serviceAccount != "" {
		if errs := validation.IsDNS1123Subdomain(p.serviceAccount); len(errs) > 0 {
			return nil, specError("spec.serviceAccountName", "%s", strings.Join(errs, "; "))
		}
	}
	p.timeout = defaultTimeout
	if spec.Timeout != "" {
		d, err := spec.TimeoutDuration()
		if err != nil || d <= 0 {
			return nil, specError("spec.timeout", "must be a positive duration such as 30m or 1h, got %q", spec.Timeout)
		}
		p.timeout = d
	}
	if err := p.applyRetry(in.Retry); err != nil {
		return nil, err
	}
	return p, nil
}

func matchesAny(res []*regexp.Regexp, v string) bool {
	for _, re := range res {
		if re.MatchString(v) {
			return true
		}
	}
	return false
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// relPath checks a path that must stay inside the repository and returns it
// cleaned of a leading "./" and trailing "/" (so "./src/" and "src" build the
// same thing).
func relPath(field, v string) (string, error) {
	if len(v) > 1024 {
		return "", specError(field, "must be at most 1024 characters")
	}
	if strings.HasPrefix(v, "/") {
		return "", specError(field, "must be relative, not absolute, got %q", v)
	}
	if !relPathPattern.MatchString(v) {
		return "", specError(field, "may contain only letters, digits and . _ @ + - /, got %q", v)
	}
	for _, part := range strings.Split(v, "/") {
		if part == ".." {
			return "", specError(field, "must stay inside the repository: '..' is not allowed, got %q", v)
		}
	}
	parts := []string{}
	for _, part := range strings.Split(v, "/") {
		if part != "" && part != "." {
			parts = append(parts, part)
		}
	}
	if len(parts) == 0 {
		return ".", nil
	}
	return strings.Join(parts, "/"), nil
}

func imageRef(field, v string, digestAllowed bool) (string, error) {
	form := "registry/repository[:tag]"
	if digestAllowed {
		form += "[@sha256:digest]"
	}
	if len(v) > 512 || !imagePattern.MatchString(v) {
		return "", specError(field, "must be an image reference %s, got %q", form, v)
	}
	if !digestAllowed && strings.Contains(v, "@") {
		return "", specError(field, "must not carry a digest, got %q", v)
	}
	return v, nil
}

// splitTag returns the repository of a registry/repository[:tag] reference
// and the reference with its tag, "latest" when it had none.
func splitTag(ref string) (repository, tagged string) {
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[:colon], ref
	}
	return ref, ref + ":latest"
}

func secretName(field, name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return specError(field, "%s", strings.Join(errs, "; "))
	}
	return nil
}
