from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_q_cloudtasks", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="receipt",
            name="holder",
            field=models.CharField(default="", max_length=32),
            preserve_default=False,
        ),
    ]
