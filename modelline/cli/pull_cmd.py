"""`modelline pull`: package a model straight from the SageMaker Model Registry or S3."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from modelline.cli.common import add_json, add_output_and_spec, add_signing, signing_identity, signing_key
from modelline.cli.output import Output

if TYPE_CHECKING:  # boto3, onnxruntime and numpy load when a pull runs, not for --help
    from sdk.package.build import BuildResult
    from sdk.pull import PullTarget
    from sdk.sources.aws import AwsOptions

_PULL_EXAMPLES = """Examples:
  modelline pull sagemaker --group pump-health --latest-approved --region eu-central-1 \\
      --key keys/signing.key --spec examples/pump_health/spec.toml -o pump-health.mlpkg
  modelline pull s3 s3://ml-artifacts/pump-health/model.tar.gz --name pump-health --version 1.2.0 \\
      --key keys/signing.key -o pump-health-1.2.0.mlpkg

Run 'modelline pull SOURCE --help' for each source's options."""

_SAGEMAKER_EXAMPLE = """Examples:
  modelline pull sagemaker --group pump-health --latest-approved --region eu-central-1 \\
      --key keys/signing.key --spec spec.toml -o pump-health.mlpkg
  modelline pull sagemaker --group pump-health --version 7 --key keys/signing.key -o pump-health-7.mlpkg

Credentials come from the usual AWS places (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
~/.aws). Only Approved versions are packaged unless --allow-unapproved is given. The package
version defaults to N.0.0 for registry version N; its provenance records the model package ARN,
approval status and metrics."""

_S3_EXAMPLE = """Example:
  modelline pull s3 s3://ml-artifacts/pump-health/model.tar.gz --name pump-health --version 1.2.0 \\
      --key keys/signing.key -o pump-health-1.2.0.mlpkg

The object may be a .onnx file or a model.tar.gz holding one (choose with --model-file if it holds several)."""


def _common(parser: argparse.ArgumentParser) -> None:
    add_output_and_spec(parser)
    parser.add_argument("--model-file", metavar="PATH", help="the .onnx file inside the archive, if it holds several")
    parser.add_argument("--name", help="model name for the package (default: the group or object name)")
    parser.add_argument("--region", help="AWS region (default: from the AWS configuration)")
    parser.add_argument("--endpoint-url", metavar="URL", help="S3/SageMaker-compatible endpoint instead of AWS")
    parser.add_argument("--profile", help="AWS profile name")
    add_signing(parser)
    add_json(parser)


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `pull sagemaker` and `pull s3`."""
    pull = commands.add_parser(
        "pull",
        help="package a model from SageMaker Model Registry or S3",
        formatter_class=formatter,
        epilog=_PULL_EXAMPLES,
    )
    sub = pull.add_subparsers(dest="pull_command", metavar="SOURCE", required=True)

    sm = sub.add_parser(
        "sagemaker",
        help="from a SageMaker Model Registry model package group",
        formatter_class=formatter,
        epilog=_SAGEMAKER_EXAMPLE,
    )
    sm.add_argument("--group", required=True, help="model package group name")
    which = sm.add_mutually_exclusive_group()
    which.add_argument(
        "--version",
        dest="registry_version",
        type=int,
        metavar="N",
        help="registry version number (default: the newest Approved version)",
    )
    which.add_argument("--latest-approved", action="store_true", help="the newest Approved version (the default)")
    sm.add_argument("--allow-unapproved", action="store_true", help="also package a version that is not Approved")
    sm.add_argument("--package-version", metavar="SEMVER", help="package version (default: N.0.0)")
    _common(sm)
    sm.set_defaults(handler=_sagemaker)

    s3 = sub.add_parser(
        "s3", help="from an S3 object (.onnx or model.tar.gz)", formatter_class=formatter, epilog=_S3_EXAMPLE
    )
    s3.add_argument("uri", metavar="s3://BUCKET/KEY", help="the object to package")
    s3.add_argument("--version", dest="package_version", metavar="SEMVER", help="package version (default: 1.0.0)")
    _common(s3)
    s3.set_defaults(handler=_s3)


def _target(args: argparse.Namespace) -> PullTarget:
    from sdk.package.spec import PackageSpec
    from sdk.pull import PullTarget

    return PullTarget(
        out_path=args.output,
        private_key=signing_key(args),
        identity=signing_identity(args),
        spec=PackageSpec.load(args.spec) if args.spec else None,
        name=args.name,
        version=args.package_version,
        model_file=args.model_file,
    )


def _aws(args: argparse.Namespace) -> AwsOptions:
    from sdk.sources.aws import AwsOptions

    return AwsOptions(region=args.region, endpoint_url=args.endpoint_url, profile=args.profile)


def _report(out: Output, result: BuildResult, extra: dict[str, object]) -> None:
    m = result.manifest
    out.result(
        {
            "ok": True,
            "path": str(result.path),
            "name": m.name,
            "version": m.version,
            "sha256": result.sha256,
            "signed_by": result.signed_by,
            **extra,
        },
        f"built {result.path}: {m.name} {m.version} from {m.provenance.uri}\nsha256 {result.sha256}\n"
        + (f"signed by key {result.signed_by}" if result.signed_by else "unsigned"),
    )


def _sagemaker(args: argparse.Namespace, out: Output) -> int:
    from sdk.pull import pull_sagemaker

    target = _target(args)
    with out.transfer("downloading model artifact") as progress:
        found, result = pull_sagemaker(
            args.group,
            _aws(args),
            target,
            version=args.registry_version,
            allow_unapproved=args.allow_unapproved,
            progress=progress,
        )
    out.note(f"registry: {found.group} version {found.version} ({found.approval_status}), {found.arn}")
    _report(
        out,
        result,
        {
            "model_package_arn": found.arn,
            "approval_status": found.approval_status,
            "registry_version": found.version,
            "metrics": found.metrics,
        },
    )
    return 0


def _s3(args: argparse.Namespace, out: Output) -> int:
    from sdk.pull import pull_s3

    target = _target(args)
    with out.transfer(f"downloading {args.uri}") as progress:
        result = pull_s3(args.uri, _aws(args), target, progress=progress)
    _report(out, result, {})
    return 0
